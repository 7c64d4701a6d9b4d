"""Source outages: MES unreachable, the PLM folder gone, a telemetry file still being written.

The broken systems fail with a clear message, the others land their new data, every twin is
kept but marked stale; once the sources are back, the next build catches up without a gap
(it equals a build from scratch on the same sources).
"""

from __future__ import annotations

import shutil

import pytest

from orchestration import lake
from orchestration.simulate import advance
from tests.helpers import build, published, query, start_from, thread

pytestmark = pytest.mark.slow
UNREACHABLE = "postgresql+psycopg://thread:Outage-Pw-91@127.0.0.1:9/mes?connect_timeout=2"


def test_outages_fail_loudly_mark_twins_stale_and_catch_up_without_gaps(tiny_built, tmp_path, monkeypatch):
    sources, data = start_from(tiny_built, tmp_path)
    before = {f.name for f in (sources / "service" / "telemetry").glob("*.parquet")}
    events_before = lake.read(data / "lake" / "raw" / "service" / "service_events").num_rows
    advance(sources, 10)

    # The outage: MES down, PLM's export folder gone, the newest telemetry file half written.
    (sources / "plm").rename(tmp_path / "plm-away")
    newest = max(f for f in (sources / "service" / "telemetry").glob("*.parquet") if f.name not in before)
    whole = newest.read_bytes()
    newest.write_bytes(whole[: len(whole) // 2])
    monkeypatch.setenv("MES_DATABASE_URL", UNREACHABLE)
    result = _build_keeping_env(sources, data, monkeypatch)

    failed = {s.key: s.detail for s in result.failed}
    assert {k.split("/")[0] for k in failed} == {"plm", "mes", "service"}, failed
    assert all(k.startswith(("plm/", "mes/")) or k == "service/telemetry" for k in failed), failed
    assert "file missing" in failed["plm/parts"]
    assert "database unreachable" in failed["mes/units"] and "Outage-Pw-91" not in failed["mes/units"]
    assert newest.name in failed["service/telemetry"] and "unreadable" in failed["service/telemetry"]
    # Service events still flowed in.
    assert lake.read(data / "lake" / "raw" / "service" / "service_events").num_rows > events_before
    twins = query(data / "warehouse.duckdb", "select is_stale, stale_reason from twin.unit_twin")
    assert twins and all(stale for stale, _ in twins)
    assert all("last extraction failed" in r and "mes" in r and "plm" in r and "telemetry" in r for _, r in twins)
    # Monitoring sees it: failing, but every system's last good data is still within its limit.
    check = _status(sources, data)
    assert check["exit_code"] == 1 and check["state"] == "warning", check
    assert {s["system"] for s in check["systems"] if s["failing_entities"]} == {"plm", "mes", "service"}

    # Recovery.
    (tmp_path / "plm-away").rename(sources / "plm")
    newest.write_bytes(whole)
    monkeypatch.setenv("MES_DATABASE_URL", "")
    result = _build_keeping_env(sources, data, monkeypatch)
    assert result.ok, result.failed
    assert not query(data / "warehouse.duckdb", "select count(*) from twin.unit_twin where is_stale")[0][0]
    assert _status(sources, data)["exit_code"] == 0

    scratch_sources, scratch = tmp_path / "scratch_sources", tmp_path / "scratch"
    shutil.copytree(sources, scratch_sources)
    assert build(scratch_sources, scratch).ok
    assert published(data / "warehouse.duckdb") == published(scratch / "warehouse.duckdb")


def _build_keeping_env(sources, data, monkeypatch):
    """`build` sets the standard environment; keep this test's MES URL over it."""
    import os

    url = os.environ["MES_DATABASE_URL"]
    import dagster as dg

    from orchestration.build import run_build
    from orchestration.definitions import defs
    from orchestration.settings import ThreadSettings
    from tests.helpers import thread_env

    thread_env(monkeypatch, sources, data)
    monkeypatch.setenv("MES_DATABASE_URL", url)
    with dg.DagsterInstance.ephemeral() as instance:
        return run_build(defs, instance, ThreadSettings.from_env())


def _status(sources, data) -> dict:
    import json

    done = thread(["status", "--format", "json"], sources, data)
    doc = json.loads(done.stdout)
    assert done.returncode == doc["exit_code"], done.stderr
    return doc
