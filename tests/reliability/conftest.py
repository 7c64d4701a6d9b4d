"""Helpers for the fault tests: `thread build` as a real process on a tiny enterprise."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from orchestration import faults, lake
from orchestration.simulate import SimConfig, simulate
from orchestration.simulate.changes import release_eco as write_eco
from tests.conftest import copy_built

TINY = SimConfig(seed=11, units=25, parts=80, start=date(2026, 1, 5), days=60, telemetry_every_h=24)
THREAD = str(Path(sys.executable).parent / "thread")
# Columns that say when something ran, not what the data is.
VOLATILE = {"refreshed_at", "detected_at"}
SALT = "reliability-salt-7f3a"


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "sources"
    simulate(out, TINY)
    return out


@pytest.fixture(scope="session")
def tiny_built(tiny_sources, tmp_path_factory):
    """The tiny enterprise after one `thread build`, and what that build printed. Tests start from
    a copy (`copy_built`) rather than each paying for the same first build."""
    root = tmp_path_factory.mktemp("tiny-built")
    sources, data = root / "sources", root / "data"
    shutil.copytree(tiny_sources, sources)
    done = build_ok(sources, data)
    return sources, data, done.stdout + done.stderr


def start_from(tiny_built, dest: Path) -> tuple[Path, Path]:
    """A private copy of the tiny enterprise as its first build left it (Dagster history included)."""
    return copy_built(tiny_built[0], tiny_built[1], dest)


def env_for(sources: Path, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREAD_", "DAGSTER_", "MES_"))}
    env.update({"THREAD_SOURCES_DIR": str(sources), "THREAD_DATA_DIR": str(data), "MES_DATABASE_URL": "",
                "THREAD_PII_SALT": SALT, "THREAD_TWIN_UNITS_PER_PARTITION": "1",
                "DAGSTER_HOME": str(data / "dagster")})
    (data / "dagster").mkdir(parents=True, exist_ok=True)
    env.update(extra)
    return env


def thread(args: list[str], sources: Path, data: Path, timeout: float = 600, **extra: str):
    return subprocess.run([THREAD, *args], env=env_for(sources, data, **extra), capture_output=True, text=True,
                          timeout=timeout)


def build_ok(sources: Path, data: Path, **extra: str) -> subprocess.CompletedProcess:
    done = thread(["build"], sources, data, **extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def start_paused(point: str, sources: Path, data: Path, marker: Path) -> subprocess.Popen:
    """`thread build` in its own process group, stopped at `point` (see orchestration.faults)."""
    marker.unlink(missing_ok=True)
    env = env_for(sources, data, **{faults.PAUSE_AT: point, faults.MARKER: str(marker)})
    proc = subprocess.Popen([THREAD, "build"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the build never reached {point}:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            kill(proc)
            raise AssertionError(f"timed out waiting for {point}")
        time.sleep(0.1)
    return proc


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the whole build: the CLI and whatever it started (dbt)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def delta_tables(lake_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(lake_dir).rglob("_delta_log"))


def read_every_delta_table(lake_dir: Path) -> dict[str, int]:
    """Open and fully read every Delta table; a torn one raises."""
    return {str(p.relative_to(lake_dir)): lake.read(p).num_rows for p in delta_tables(lake_dir)}


def published(warehouse: Path) -> dict[str, list[tuple]]:
    """Every published table as sorted rows, without the columns that only say when it ran."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                             "WHERE table_schema IN ('thread', 'twin') ORDER BY 1, 2").fetchall()
        out = {}
        for schema, name in tables:
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "ORDER BY ordinal_position", [schema, name]).fetchall() if c not in VOLATILE]
            select = ", ".join(f'"{c}"' for c in cols)
            out[f"{schema}.{name}"] = sorted(con.execute(f'SELECT {select} FROM {schema}."{name}"').fetchall(),
                                             key=repr)
        return out
    finally:
        con.close()


def raw_counts(lake_dir: Path) -> dict[str, tuple[int, int]]:
    """Rows and distinct keys of every raw and quarantine table (duplicates show as a gap)."""
    import contracts

    out = {}
    for c in contracts.ENTITIES.values():
        for layer in ("raw", "quarantine"):
            t = lake.read(Path(lake_dir) / layer / c.system / c.entity)
            if t is None:
                continue
            if layer == "raw":
                keys = {tuple(r.values()) for r in t.select(list(c.key)).to_pylist()}
            else:
                keys = {(r["source"], r["source_row"], r["rule"]) for r in
                        t.select(["source", "source_row", "rule"]).to_pylist()}
            out[f"{layer}/{c.system}/{c.entity}"] = (t.num_rows, len(keys))
    return out


def rows(path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def horizon(sources) -> str:
    ts = [json.loads(x)["occurred_at"] for x in (sources / "service" / "service_events.jsonl").read_text().splitlines()]
    return max(ts) if ts else "2026-01-01T00:00:00Z"


def release_eco(sources, pick: int, n: int, action: str) -> None:
    """Engineering releases ECO-77<n>: a new revision of a released component, effective by date."""
    revisions = [r for r in rows(sources / "plm" / "part_revisions.csv")
                 if r["state"] == "released" and r["part_number"].startswith("C-")]
    part = revisions[pick % len(revisions)]
    at = horizon(sources)
    new_rev = part["revision"] + "Z" * n
    eco = f"ECO-77{n:02d}"
    effective = (date.fromisoformat(at[:10]) - timedelta(days=20)).isoformat()
    write_eco(sources, eco, part["part_number"], part["revision"], new_rev, at, effective, action)


def retrofit(sources, pick: int, n: int) -> None:
    """Service swaps one fitted component of one unit for a new revision."""
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    fitted = con.execute("SELECT serial_number, part_number, revision FROM as_built_components "
                         "WHERE part_number LIKE 'C-%' ORDER BY 1, 2, 3").fetchall()
    con.close()
    serial, part, rev = fitted[pick % len(fitted)]
    at = horizon(sources)
    event = {"event_id": f"SE-PROP-{n}", "serial_number": serial, "event_type": "retrofit", "occurred_at": at,
             "closed_at": at, "removed_part_number": part, "removed_revision": rev, "installed_part_number": part,
             "installed_revision": rev + "R", "installed_component_serial": f"R-{n}", "eco_number": None,
             "notes": "property test"}
    with (sources / "service" / "service_events.jsonl").open("a") as f:
        f.write(json.dumps(event) + "\n")
