"""Failures a user can read, and personal data only where it belongs (`thread build` as a process).

One clear line per failure on the terminal, the trace in the log file; a full disk says so; a
reader holding the build database is named; without THREAD_PII_SALT a secret salt is generated
and kept owner-only; tables with personal data are owner-only; findings never carry it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import duckdb
import pytest

from orchestration import lake
from orchestration.simulate import advance
from tests.helpers import SALT, start_from, thread

pytestmark = pytest.mark.slow


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_failed_step_is_one_line_and_its_trace_goes_to_the_log(tiny_built, tmp_path):
    sources, data = start_from(tiny_built, tmp_path)
    (sources / "plm" / "bom_lines.csv").write_text("parent_part_number,parent_revision\nX,A\n")
    done = thread(["build"], sources, data)
    terminal = done.stdout + done.stderr
    assert done.returncode == 1
    assert "Traceback" not in terminal and "Stack Trace" not in terminal, terminal[-3000:]
    failed = [line for line in terminal.splitlines() if "plm/bom_lines" in line and "✗" in line]
    assert len(failed) == 1 and "column 'find_number'" in failed[0], terminal[-3000:]
    log = sorted((data / "logs").glob("build-*.log"))[-1].read_text()
    assert "ExportBreach" in log and "Stack Trace" in log


def test_a_reader_holding_the_build_database_is_named(tiny_built, tmp_path):
    sources, data = start_from(tiny_built, tmp_path)
    advance(sources, 1)
    holder = duckdb.connect(str(data / "build" / "build.duckdb"))  # someone's notebook, read-write
    try:
        done = thread(["build"], sources, data)
    finally:
        holder.close()
    assert done.returncode == 1
    assert f"The build database {data / 'build' / 'build.duckdb'} is open in another process (PID {os.getpid()})" \
        in done.stdout, done.stdout[-3000:]
    assert "Traceback" not in done.stdout + done.stderr


def test_a_full_disk_says_so_leaves_nothing_behind_and_the_rerun_recovers(tiny_built, tmp_path):
    sources, data0 = start_from(tiny_built, tmp_path)
    advance(sources, 3)
    used = sum(p.stat().st_size for p in data0.rglob("*") if p.is_file())
    mount = tmp_path / "small-disk"
    mount.mkdir()
    size_mb = used // 2**20 + 40
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        data = mount / "data"
        shutil.copytree(data0, data)
        before = (data / "warehouse.duckdb").read_bytes()
        filler = mount / "filler"
        with filler.open("wb") as f:  # leave ~1 MiB: the next build runs out part way
            free = shutil.disk_usage(mount).free
            f.write(b"\0" * max(0, free - 2**20))
        done = thread(["build"], sources, data)
        terminal = done.stdout + done.stderr
        assert done.returncode == 1
        assert "No space left on device" in terminal, terminal[-3000:]
        assert "disk I/O error" not in terminal.split("No space left on device")[0][-200:]
        assert "Traceback" not in terminal
        assert not list(data.glob(".warehouse.duckdb.next-*"))
        assert (data / "warehouse.duckdb").read_bytes() == before  # the last good warehouse, still served
        filler.unlink()
        again = thread(["build"], sources, data)
        assert again.returncode == 0, again.stdout[-3000:]
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_without_a_salt_a_secret_one_is_generated_kept_owner_only_and_said(tiny_sources, tmp_path):
    sources, data = tmp_path / "sources", tmp_path / "data"
    shutil.copytree(tiny_sources, sources)
    done = thread(["build"], sources, data, THREAD_PII_SALT="")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "THREAD_PII_SALT is not set" in done.stdout
    secret = data / "secrets" / "pii_salt"
    assert _mode(secret) == 0o600 and _mode(secret.parent) == 0o700
    salt = secret.read_text().strip()
    assert len(salt) == 64
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    masks = dict(con.execute("SELECT customer_id, email_masked FROM thread.customers").fetchall())
    con.close()
    people = {p["customer_id"]: p for p in map(json.loads, (sources / "service" / "customers.jsonl").read_text().splitlines())}
    import hashlib

    for cid, masked in masks.items():
        email = people[cid].get("email")
        if email:
            assert masked == hashlib.sha256(f"{salt}|email|{email.strip().lower()}".encode()).hexdigest()[:16]
            # ... and nobody can recompute it with the old public demo salt.
            demo = hashlib.sha256(f"digital-thread-demo-salt|email|{email.strip().lower()}".encode()).hexdigest()[:16]
            assert masked != demo
    # The same secret next time: masks stay stable.
    assert thread(["build"], sources, data, THREAD_PII_SALT="").returncode == 0
    assert secret.read_text().strip() == salt


def test_personal_data_tables_are_owner_only_and_findings_never_carry_it(tiny_built, tmp_path):
    sources, data = start_from(tiny_built, tmp_path)
    with (sources / "service" / "customers.jsonl").open("a") as f:
        # A rejected customer: the name and email must not reach the findings analysts read.
        f.write(json.dumps({"customer_id": "CU-BAD", "name": "Grace Hopper", "email": "grace@example.com",
                            "country": "not-a-country-code-at-all"}) + "\n")
        f.write(json.dumps({"customer_id": "CU-BAD", "name": "Grace Hopper", "email": "grace2@example.com",
                            "country": "US"}) + "\n")
    done = thread(["build"], sources, data, THREAD_PII_SALT=SALT)
    assert done.returncode == 0, done.stdout[-3000:]
    lake_dir = data / "lake"
    quarantine = lake.read(lake_dir / "quarantine" / "service" / "customers")
    assert any("grace@example.com" in (r or "") for r in quarantine.column("record").to_pylist())
    findings = lake_dir / "audit" / "contract_findings"
    records = "\n".join(r or "" for r in lake.read(findings).column("record").to_pylist())
    assert "CU-BAD" in records and "Grace" not in records and "grace" not in records
    # Delta's statistics (min/max in the log) hold no personal data either.
    log_text = "".join(p.read_text() for p in (findings / "_delta_log").glob("*.json"))
    assert "Grace" not in log_text and "grace@" not in log_text
    for table in ("raw/service/customers", "quarantine/service/customers"):
        root = lake_dir / table
        assert _mode(root) == 0o700, table
        for path in root.rglob("*"):
            assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert _mode(lake_dir / "raw" / "plm" / "parts") & 0o005  # the rest stays readable
