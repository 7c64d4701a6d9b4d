"""Kill the build with SIGKILL where it hurts, then rerun: nothing torn, lost or doubled.

One enterprise goes through the same history twice: once cleanly (build, new activity, build,
build again) and once with a crash at each point of the second build. Both must end identical.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from orchestration import lake
from orchestration.simulate import advance
from tests.helpers import (
    build_ok,
    digest,
    kill,
    published,
    raw_counts,
    read_every_delta_table,
    start_from,
    start_paused,
)

pytestmark = pytest.mark.slow

# In pipeline order, so each crashed run gets one stage further than the last.
CRASH_POINTS = ["raw-commit:service/service_events", "dbt-run", "twin-write", "publish-rename", "publish-mirror"]
BAD_EVENT = {"event_id": "SE-CRASH-1", "serial_number": "X", "event_type": "maintenance",
             "occurred_at": "2026-03-10T00:00:00Z", "closed_at": "2026-03-09T00:00:00Z"}


def new_activity(sources):
    """A month more of the enterprise, and one service event the contract rejects (so the crashed
    extraction had quarantined something before it died)."""
    advance(sources, 20)
    with (sources / "service" / "service_events.jsonl").open("a") as f:
        f.write(json.dumps(BAD_EVENT) + "\n")


@pytest.fixture(scope="module")
def reference(tiny_built, tmp_path_factory):
    sources, data = start_from(tiny_built, tmp_path_factory.mktemp("reference"))
    new_activity(sources)
    build_ok(sources, data)
    first = published(data / "warehouse.duckdb"), raw_counts(data / "lake")
    build_ok(sources, data)
    return data, first


def test_two_builds_on_unchanged_sources_are_identical(reference):
    data, (tables, counts) = reference
    assert published(data / "warehouse.duckdb") == tables
    # Raw events are not read twice: same rows, and as many distinct keys as rows.
    assert raw_counts(data / "lake") == counts
    events = {k: v for k, v in counts.items() if k.startswith("raw/") and k.split("/")[2] in (
        "production_events", "service_events", "telemetry")}
    assert events and all(rows == keys > 0 for rows, keys in events.values()), events


def test_killed_builds_leave_every_table_whole_and_the_rerun_equals_an_uninterrupted_build(
        tiny_built, reference, tmp_path):
    sources, data = start_from(tiny_built, tmp_path)
    new_activity(sources)
    warehouse = data / "warehouse.duckdb"
    last_good = digest(warehouse)
    for point in CRASH_POINTS:
        kill(start_paused(point, sources, data, tmp_path / "paused"))
        read_every_delta_table(data / "lake")
        if point == "publish-mirror":
            # Killed after the rename: the new warehouse is whole and is what is served.
            assert digest(warehouse) != last_good
            assert published(warehouse) == published(reference[0] / "warehouse.duckdb")
        else:
            # Killed before the rename: analysts still get the last good warehouse, untouched.
            assert digest(warehouse) == last_good, point

    build_ok(sources, data)

    ref_data, _ = reference
    read_every_delta_table(data / "lake")
    assert raw_counts(data / "lake") == raw_counts(ref_data / "lake")
    quarantine = lake.read(data / "lake" / "quarantine" / "service" / "service_events").to_pylist()
    quarantined = [r for r in quarantine if "SE-CRASH-1" in (r["record"] or "")]
    assert len(quarantined) == 1, quarantined
    assert published(warehouse) == published(ref_data / "warehouse.duckdb")
    assert not list(data.glob(".warehouse.duckdb.next-*"))
    # The killed runs are not left "started" in the UI's run history.
    with dg.DagsterInstance.from_config(str(data / "dagster")) as instance:
        assert not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
