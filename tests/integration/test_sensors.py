"""The sensors that start everything: each source's exports, and the twin refresh."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import dagster as dg
import pyarrow as pa
import pytest

import contracts
from orchestration import lake, twins
from orchestration.definitions import SENSORS
from orchestration.defs.keys import TWIN_CHANGES_KEY, TWIN_KEY, WAREHOUSE_KEY
from orchestration.defs.twins import CHANGE_SET_TAG, CHANGE_SET_WAIT, UNITS, twin_refresh_sensor
from orchestration.settings import ThreadSettings
from tests.sources import write_telemetry

plm_sensor, mes_sensor, service_sensor = SENSORS["plm"], SENSORS["mes"], SENSORS["service"]


@pytest.fixture
def world(built_small_copy):
    sources, data = built_small_copy
    return sources, data, ThreadSettings(sources_dir=str(sources), data_dir=str(data))


def tick(sensor, thread, cursor=None, instance=None):
    with dg.build_sensor_context(cursor=cursor, resources={"thread": thread}, instance=instance) as ctx:
        result = sensor(ctx)
        return result, ctx.cursor


def requested(result) -> set[str]:
    """The exports a sensor's run extracts (it rebuilds the thread after them too)."""
    if isinstance(result, dg.SkipReason) or result is None:
        return set()
    runs = [result] if isinstance(result, dg.RunRequest) else result.run_requests
    keys = {k.to_user_string() for r in runs for k in r.asset_selection}
    extracted = {k for k in keys if k.split("/")[0] in contracts.SYSTEMS}
    if extracted:
        assert {"thread/units", "twin/changes"} <= keys, "a source run rebuilds the thread after landing"
    return extracted


def test_file_sensor_requests_only_the_changed_export(world):
    sources, _, thread = world
    first, cursor = tick(plm_sensor, thread)
    assert requested(first) == set(), "the first look only records what is there (the lake is current)"
    quiet, cursor = tick(plm_sensor, thread, cursor)
    assert requested(quiet) == set()
    with (sources / "plm" / "ecos.csv").open("a") as f:
        f.write("ECO-9999,t,r,draft,2026-06-01T00:00:00Z,,date,2026-07-01,none\n")
    changed, cursor = tick(plm_sensor, thread, cursor)
    assert requested(changed) == {"plm/ecos"}


def test_telemetry_sensor_sees_a_new_file(world):
    sources, _, thread = world
    _, cursor = tick(service_sensor, thread)
    write_telemetry(sources / "service" / "telemetry" / "2099-01-01.parquet",
                    [{"serial_number": "X-1", "ts": "2099-01-01T00:00:00Z", "sensor": "s", "value": 1.0}])
    changed, _ = tick(service_sensor, thread, cursor)
    assert requested(changed) == {"service/telemetry"}


def test_mes_sensor_sees_new_rows_and_status_changes(world):
    sources, _, thread = world
    _, cursor = tick(mes_sensor, thread)
    # Nothing written since: the database file's stamp says so, and the tables are not counted.
    quiet, cursor = tick(mes_sensor, thread, cursor)
    assert requested(quiet) == set() and "database file is as it was" in quiet.skip_message
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    con.execute("UPDATE units SET status = 'scrapped' WHERE serial_number = (SELECT min(serial_number) FROM units)")
    con.execute("INSERT INTO production_events VALUES ('PE-NEW', 'X', 'ST', 'op', 'start', '2099-01-01T00:00:00Z')")
    con.commit()
    con.close()
    changed, _ = tick(mes_sensor, thread, cursor)
    assert requested(changed) == {"mes/units", "mes/production_events"}


def test_first_look_extracts_what_was_never_landed(world, tmp_path):
    sources, _, _ = world
    empty = ThreadSettings(sources_dir=str(sources), data_dir=str(tmp_path / "fresh"))
    first, _ = tick(plm_sensor, empty)
    assert len(requested(first)) == 6


def test_a_change_made_before_the_sensor_first_looks_is_not_lost(world):
    """`thread build`, then a change to the exports, then `thread serve` starts: its sensors'
    first look compares with what the lake last extracted, so the change is extracted now."""
    sources, _, thread = world
    with (sources / "plm" / "ecos.csv").open("a") as f:
        f.write("ECO-9998,t,r,draft,2026-06-01T00:00:00Z,,date,2026-07-01,none\n")
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    con.execute("INSERT INTO production_events VALUES ('PE-GAP', 'X', 'ST', 'op', 'start', '2026-01-01T00:00:00Z')")
    con.commit()
    con.close()
    plm, _ = tick(plm_sensor, thread)
    mes, _ = tick(mes_sensor, thread)
    service, _ = tick(service_sensor, thread)
    assert requested(plm) == {"plm/ecos"}
    assert requested(mes) == {"mes/production_events"}
    assert requested(service) == set()


def test_twin_refresh_sensor_requests_ranges_of_pending_units(world):
    _, data, thread = world
    state = lake.read(twins.state_dir(data / "lake") / "inputs")
    serials = sorted(state["serial_number"].to_pylist())
    picked = [serials[0], serials[1], serials[-1]]

    def detected(at: datetime) -> pa.Table:
        return pa.table({
            "serial_number": pa.array(picked),
            "reasons": pa.array([["eco"]] * 3, pa.list_(pa.string())),
            "input_hash": pa.array(["new"] * 3),
            "detected_at": pa.array([at] * 3, pa.timestamp("us", tz="UTC")),
        })

    saved = lake.read(twins.pending_table(data / "lake"))
    lake.write(twins.pending_table(data / "lake"), detected(datetime.now(timezone.utc)), "overwrite", batch_id="test")
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(UNITS.name, serials)
            result, _ = tick(twin_refresh_sensor, thread, instance=instance)
            ranges = [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                      for r in result.run_requests]
            assert ranges == [(serials[0], serials[1]), (serials[-1], serials[-1])]
            assert all("warehouse" in {k.to_user_string() for k in r.asset_selection} for r in result.run_requests)
            # A source run in progress rebuilds the thread and the change set: the twins wait for it...
            source_run = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                                       asset_selection=frozenset({dg.AssetKey(["plm", "ecos"]), TWIN_CHANGES_KEY}))
            instance.add_run(source_run)
            waiting, _ = tick(twin_refresh_sensor, thread, instance=instance)
            assert isinstance(waiting, dg.SkipReason) and source_run.run_id in waiting.skip_message
            # ...but not for longer than CHANGE_SET_WAIT after the change set was detected.
            lake.write(twins.pending_table(data / "lake"),
                       detected(datetime.now(timezone.utc) - CHANGE_SET_WAIT - timedelta(seconds=1)),
                       "overwrite", batch_id="test")
            late, _ = tick(twin_refresh_sensor, thread, instance=instance)
            assert len(late.run_requests) == 2
            assert len({r.tags[CHANGE_SET_TAG] for r in late.run_requests}) == 1
            # A change set whose runs were queued already (by the run that computed it) gets no more;
            # one whose runs were queued in part, the rest.
            for request in late.run_requests:
                queued = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                                       asset_selection=frozenset({TWIN_KEY, WAREHOUSE_KEY}),
                                       tags={**request.tags, "thread/trigger": "twin_changes"})
                instance.add_run(queued)
                again, _ = tick(twin_refresh_sensor, thread, instance=instance)
                if request is late.run_requests[0]:
                    assert [r.tags for r in again.run_requests] == [late.run_requests[1].tags]
            assert isinstance(again, dg.SkipReason) and queued.run_id in again.skip_message
    finally:
        lake.write(twins.pending_table(data / "lake"), saved, "overwrite", batch_id="test")


def test_the_thread_is_rebuilt_once_after_sources_land(world):
    from orchestration.defs.thread import thread_refresh_sensor

    _, _, thread = world
    with dg.DagsterInstance.ephemeral() as instance:
        nothing, cursor = tick(thread_refresh_sensor, thread, instance=instance)
        assert isinstance(nothing, dg.SkipReason)
        instance.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey(["plm", "ecos"])))
        first, cursor = tick(thread_refresh_sensor, thread, cursor, instance=instance)
        assert {k.to_user_string() for k in first.asset_selection} >= {"thread/units", "twin/changes", "health/rul_model"}
        again, _ = tick(thread_refresh_sensor, thread, cursor, instance=instance)
        assert isinstance(again, dg.SkipReason)


def test_a_thread_left_to_a_later_run_is_rebuilt_if_that_run_fails(world):
    """Systems landing one after another: a source run leaves the thread to the next source run.
    If that one fails before building it, thread_refresh builds what the first one landed."""
    from dagster._core.events import StepMaterializationData

    from orchestration.defs.thread import DEFERRED_TAG, WITH_THREAD_TAG, thread_refresh_sensor

    _, _, thread = world
    with dg.DagsterInstance.ephemeral() as instance:
        later = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                              tags={WITH_THREAD_TAG: "true"})
        first = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.SUCCESS,
                              tags={WITH_THREAD_TAG: "true", DEFERRED_TAG: later.run_id})
        for run in (later, first):
            instance.add_run(run)
        instance.report_dagster_event(dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value, job_name=first.job_name,
            event_specific_data=StepMaterializationData(dg.AssetMaterialization(dg.AssetKey(["plm", "ecos"])))),
            run_id=first.run_id)
        waiting, cursor = tick(thread_refresh_sensor, thread, instance=instance)
        assert isinstance(waiting, dg.SkipReason) and later.run_id in waiting.skip_message
        instance.delete_run(later.run_id)
        instance.add_run(later.with_status(dg.DagsterRunStatus.FAILURE))
        rebuilt, _ = tick(thread_refresh_sensor, thread, cursor, instance=instance)
        assert isinstance(rebuilt, dg.RunRequest) and TWIN_CHANGES_KEY in rebuilt.asset_selection


def test_nothing_pending_means_no_twin_run(world):
    _, _, thread = world
    with dg.DagsterInstance.ephemeral() as instance:
        result, _ = tick(twin_refresh_sensor, thread, instance=instance)
    assert isinstance(result, dg.SkipReason)


def test_a_thread_run_ending_while_the_sensor_looks_is_not_published_ahead_of_its_twins(world, monkeypatch):
    """The run rebuilding the thread ends between the sensor's looks: the change set it wrote
    decides (its twins, then the publish), never a publish of its own requested ahead of them."""
    from orchestration.defs import twins as twin_defs
    from orchestration.fingerprints import Ledger

    _, _, thread = world
    Ledger(thread.build_db).record("publish", "an earlier thread")  # the thread changed since
    with dg.DagsterInstance.ephemeral() as instance:
        run = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                            asset_selection=frozenset({TWIN_CHANGES_KEY}))
        instance.add_run(run)
        read = twins.pending

        def pending_as_the_run_ends(lake_dir):
            seen = read(lake_dir)  # the change set as it was a moment before the run wrote it
            instance.handle_new_event(dg.EventLogEntry(
                error_info=None, level="debug", user_message="", run_id=run.run_id, timestamp=0.0,
                dagster_event=dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, run.job_name)))
            return seen

        monkeypatch.setattr(twin_defs.twins, "pending", pending_as_the_run_ends)
        result, _ = tick(twin_refresh_sensor, thread, instance=instance)
        assert instance.get_run_by_id(run.run_id).is_finished  # the run did end during the tick
    assert isinstance(result, dg.SkipReason) and run.run_id in result.skip_message, result


def test_a_changed_thread_with_no_twin_to_refresh_is_published_once(world):
    from orchestration.fingerprints import Ledger

    _, _, thread = world
    Ledger(thread.build_db).record("publish", "an earlier thread")
    with dg.DagsterInstance.ephemeral() as instance:
        publish, _ = tick(twin_refresh_sensor, thread, instance=instance)
        assert [k.to_user_string() for k in publish.asset_selection] == ["warehouse"]
        # Not while a run that rebuilds the thread (its change set decides) or publishes is going.
        for selection in ({TWIN_CHANGES_KEY}, {dg.AssetKey(["twin", "unit_twin"]), dg.AssetKey(["warehouse"])}):
            busy = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                                 asset_selection=frozenset(selection))
            instance.add_run(busy)
            waiting, _ = tick(twin_refresh_sensor, thread, instance=instance)
            assert isinstance(waiting, dg.SkipReason) and busy.run_id in waiting.skip_message
            instance.delete_run(busy.run_id)
