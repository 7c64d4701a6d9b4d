"""The structural test: engineering releases an ECO; nobody touches the twins; the twins change.

With `thread serve` running on a simulated enterprise, the test appends a new ECO to the PLM
export (revision, ECO, affected item), then a retrofit service event, and waits until the
published warehouse shows the affected twins changed: pending retrofits and as-designed
revisions first, then the configuration hash of the retrofitted unit. It prints the latency
from file change to published twin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from orchestration.simulate import simulate
from orchestration.simulate.changes import release_eco
from tests.helpers import SMALL, published, start_server, stop_server

pytestmark = pytest.mark.e2e
TIMEOUT_S = 240


TWIN_RUNS = """{ runsOrError(limit: 500) { ... on Runs { results { runId status tags { key value } } } } }"""


def ask(warehouse: Path, sql: str, params=None):
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return None
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def wait_for(predicate, what: str, started: float) -> float:
    while time.monotonic() - started < TIMEOUT_S:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what} did not show in the warehouse within {TIMEOUT_S} s")


def wait_for_sensors(server, names: set[str]) -> None:
    """Edit the sources only after each sensor has finished its first look (which sets its cursor:
    a change written while that first tick is still running would count as already seen)."""
    query = """{ sensorsOrError(repositorySelector: {repositoryName: "__repository__",
                 repositoryLocationName: "orchestration.definitions:defs"}) {
                 ... on Sensors { results { name sensorState { ticks(limit: 2) { status } } } } } }"""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        results = server.graphql(query)["sensorsOrError"].get("results", [])
        ticked = {r["name"] for r in results
                  if any(t["status"] in ("SKIPPED", "SUCCESS") for t in r["sensorState"]["ticks"])}
        if names <= ticked:
            return
        time.sleep(1)
    raise AssertionError(f"sensors {names - ticked} never ticked")


def test_an_eco_reaches_the_twins_without_anyone_touching_them(tmp_path):
    sources, data = tmp_path / "sources", tmp_path / "data"
    simulate(sources, SMALL)
    env = {**os.environ, "THREAD_SOURCES_DIR": str(sources), "THREAD_DATA_DIR": str(data),
           "MES_DATABASE_URL": "", "THREAD_PII_SALT": "test-salt"}
    env.pop("DAGSTER_HOME", None)
    thread = str(Path(sys.executable).parent / "thread")
    subprocess.run([thread, "build"], env=env, check=True, capture_output=True)
    warehouse = data / "warehouse.duckdb"

    # The part to change: a component fitted once per unit, held (one revision) by the most units.
    part, revision = ask(warehouse, """
        select b.part_number, b.revision from thread.unit_as_built b
        join thread.parts p using (part_number) join thread.units u using (serial_number)
        where p.part_type = 'component' and u.status = 'shipped' and b.quantity = 1
        group by all order by count(*) desc, 1 limit 1""")[0]
    holders = [s for (s,) in ask(warehouse, """
        select distinct c.serial_number from thread.unit_configuration c join thread.units u using (serial_number)
        where c.part_number = ? and c.revision = ? and u.status <> 'scrapped' order by 1""", [part, revision])]
    # Effective from the middle of the fleet: later units are now designed with the new revision,
    # earlier ones must be retrofitted.
    effective_from = ask(warehouse, "select strftime(median(build_started_at), '%Y-%m-%d') from thread.units "
                                    "where serial_number in (select unnest(?))", [holders])[0][0]
    existing = [r for (r,) in ask(warehouse, "select revision from thread.part_revisions where part_number = ?", [part])]
    new_revision = max(existing) + "X"
    before = dict(ask(warehouse, "select serial_number, pending_retrofits from twin.unit_twin"))
    hashes = dict(ask(warehouse, "select serial_number, configuration_hash from twin.unit_twin"))
    old_unit = holders[0]
    # Written after the build and before `thread serve` starts, while nothing watches: not lost.
    with (sources / "plm" / "ecos.csv").open("a") as f:
        f.write("ECO-GAP,Written while nobody watched,test,draft,2026-06-01T00:00:00Z,,date,2026-07-01,none\n")

    server = start_server(sources, data, tmp_path)
    try:
        started = time.monotonic()
        wait_for(lambda: bool(ask(warehouse, "select 1 from thread.ecos where eco_number = 'ECO-GAP'")),
                 "the change made before the server started", started)
        wait_for_sensors(server, {"plm_exports", "service_exports", "mes_exports"})
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        started = time.monotonic()
        release_eco(sources, "ECO-9001", part, revision, new_revision, now, effective_from, "retrofit",
                    title=f"Retrofit {part}")

        def eco_reached_twins() -> bool:
            rows = ask(warehouse, "select count(*) filter (where impact = 'retrofit_pending'), "
                                  "count(*) filter (where is_within_effectivity) from thread.eco_impact "
                                  "where eco_number = 'ECO-9001'")
            if not rows or rows[0][0] == 0:
                return False
            twins = dict(ask(warehouse, "select serial_number, pending_retrofits from twin.unit_twin "
                                        "where not is_stale") or [])
            return twins.get(old_unit, 0) == before[old_unit] + 1

        eco_latency = wait_for(eco_reached_twins, "the ECO's pending retrofits", started)
        designed = ask(warehouse, "select count(*) from thread.unit_as_designed where part_number = ? and revision = ?",
                       [part, new_revision])[0][0]
        assert designed > 0, "units built after the effectivity date should now be designed with the new revision"
        pending = ask(warehouse, "select count(*) from twin.unit_twin where pending_retrofits > 0")[0][0]
        assert pending > 0

        # Service retrofits one unit: its configuration changes, its pending retrofit goes away.
        occurred = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {"event_id": "SE-RETRO-1", "serial_number": old_unit, "event_type": "retrofit",
                 "occurred_at": occurred, "closed_at": occurred, "removed_part_number": part,
                 "removed_revision": revision, "installed_part_number": part, "installed_revision": new_revision,
                 "installed_component_serial": "NEW-1", "eco_number": "ECO-9001", "notes": "retrofit"}
        started = time.monotonic()
        with (sources / "service" / "service_events.jsonl").open("a") as f:
            f.write(json.dumps(event) + "\n")

        def retrofit_reached_twin() -> bool:
            rows = ask(warehouse, "select configuration_hash, pending_retrofits, is_stale from twin.unit_twin "
                                  "where serial_number = ?", [old_unit])
            return bool(rows) and rows[0][0] != hashes[old_unit] and rows[0][1] == before[old_unit] and not rows[0][2]

        retrofit_latency = wait_for(retrofit_reached_twin, "the retrofit's new configuration", started)
        # The refreshes converge: once nothing is pending, the published twins are what a build from
        # scratch of the same sources gives (no mix of thread versions left anywhere).
        wait_for(lambda: ask(warehouse, "select count(*) from twin.unit_twin where is_stale") == [(0,)],
                 "every twin refreshed", time.monotonic())
        twin_runs = server.graphql(TWIN_RUNS)["runsOrError"]["results"]
    finally:
        stop_server(server)
    scratch_sources, scratch = tmp_path / "scratch-sources", tmp_path / "scratch"
    shutil.copytree(sources, scratch_sources)
    subprocess.run([thread, "build"], check=True, capture_output=True,
                   env={**env, "THREAD_SOURCES_DIR": str(scratch_sources), "THREAD_DATA_DIR": str(scratch)})
    mine, theirs = published(warehouse), published(scratch / "warehouse.duckdb")
    for table in ("twin.unit_twin", "twin.unit_components", "thread.eco_impact", "thread.unit_configuration"):
        assert mine[table] == theirs[table], table

    # The thread's runs queued their twins' runs themselves; the sensor requested none for a change
    # set that had its runs (one change set, refreshed once).
    by_trigger: dict[str, list[tuple[str, str]]] = {}
    for run in twin_runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        if "thread/change_set" in tags:  # a run of the sensors' twins (not of the build before)
            by_trigger.setdefault(tags.get("thread/trigger"), []).append(
                (tags["thread/change_set"], tags["dagster/asset_partition_range_start"]))
            assert run["status"] not in ("FAILURE", "CANCELED"), run  # the last may still be ending
    assert by_trigger.get("twin_changes"), by_trigger
    requested = [r for runs in by_trigger.values() for r in runs]
    assert len(requested) == len(set(requested)), by_trigger

    print(f"\nECO file change -> published twins: {eco_latency:.1f} s; "
          f"retrofit event -> published twin: {retrofit_latency:.1f} s (goal <= 60 s each)")
    assert ask(warehouse, "select impact from thread.eco_impact where eco_number = 'ECO-9001' and serial_number = ?",
               [old_unit]) == [("retrofitted",)]
