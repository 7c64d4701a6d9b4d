"""The cost of a change follows the change: nothing changed, nothing done; one unit changed, one
shard rebuilt and only what changed published."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta

import pytest

import contracts
from orchestration import lake, report, twins
from orchestration.ask import AskError, ask
from orchestration.defs.keys import WAREHOUSE_KEY
from orchestration.fingerprints import Ledger
from orchestration.simulate.changes import release_eco as write_eco
from orchestration.simulate.changes import telemetry_day
from tests.helpers import build, digest, horizon, query, release_eco, retrofit, thread_env


def _versions(lake_dir) -> dict[str, int]:
    return {str(p.relative_to(lake_dir)): lake.table(p).version() for p in lake.tables(lake_dir)}


def _materialized(result) -> set[str]:
    return {s.key for s in result.steps if s.ok}


def test_a_build_on_unchanged_sources_does_nothing(built_small_copy):
    sources, data = built_small_copy
    before, warehouse = _versions(data / "lake"), digest(data / "warehouse.duckdb")
    result = build(sources, data)
    assert result.ok, result.failed
    done = _materialized(result)
    assert not {k for k in done if k.split("/")[0] in ("staging", "intermediate", "thread", "twin_logic", "twin")}, done
    assert "warehouse" not in done
    # Not even launched: each of their steps would have found its inputs as it last completed.
    assert result.unchanged == ["thread", "publish"]
    after = _versions(data / "lake")
    # Only the extraction log moved: it records that every export was checked (freshness reads it).
    assert {k for k in after if after[k] != before.get(k)} == {"audit/extractions"}
    assert digest(data / "warehouse.duckdb") == warehouse
    # Exports untouched since their last extraction are not even read: files by size and time, the
    # SQLite MES database by its file's stamp.
    latest = _latest(data)
    assert {k: r["input_rows"] for k, r in latest.items() if r["input_rows"]} == {}
    assert all(r["status"] == "ok" and not r["is_changed"] for r in latest.values())


def test_a_change_set_left_unfinished_is_computed_by_the_next_build(built_small_copy):
    """A build whose thread completed but whose twin change set did not (the process killed in
    between): the next build on the same sources runs the estimates and the change set alone."""
    sources, data = built_small_copy
    ledger = Ledger(data / "build" / "build.duckdb")
    assert ledger.get("thread") and ledger.get("twin_changes")
    ledger.forget("twin_changes")
    result = build(sources, data)
    assert result.ok, result.failed
    done = _materialized(result)
    assert "twin/changes" in done and "health/rul_model" in done
    assert not {k for k in done if k.split("/")[0] in ("staging", "intermediate", "thread", "twin_logic")}, done
    assert ledger.get("twin_changes") and result.unchanged == []


def _latest(data) -> dict:
    latest = {}
    for r in sorted(lake.read(data / "lake" / "audit" / "extractions").to_pylist(), key=lambda r: r["extracted_at"]):
        latest[(r["system"], r["entity"])] = r
    return {(c.system, c.entity): latest[(c.system, c.entity)] for c in contracts.ENTITIES.values()}


def test_a_correction_in_place_in_mes_is_read(built_small_copy):
    """An MES update that leaves the table's row count and high-water marks as they were (a unit's
    line corrected) still changes the database file: every MES table is read again."""
    import sqlite3

    sources, data = built_small_copy
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    serial, line = con.execute("SELECT serial_number, line_id FROM units ORDER BY serial_number LIMIT 1").fetchone()
    other = con.execute("SELECT line_id FROM units WHERE line_id <> ? LIMIT 1", (line,)).fetchone()[0]
    con.execute("UPDATE units SET line_id = ? WHERE serial_number = ?", (other, serial))
    con.commit()
    con.close()
    result = build(sources, data)
    assert result.ok, result.failed
    latest = _latest(data)
    assert latest[("mes", "units")]["input_rows"] > 0 and latest[("mes", "units")]["is_changed"]
    assert latest[("plm", "parts")]["input_rows"] == 0
    assert query(data / "warehouse.duckdb", "SELECT line_id FROM thread.units WHERE serial_number = ?", [serial]) == [(other,)]


def _dbt_invocations(data) -> set[str]:
    log = data / "logs" / "dbt" / "dbt.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return {json.loads(line)["info"]["invocation_id"] for line in lines if line.startswith("{")}


def test_one_unit_changed_rebuilds_its_shard_and_publishes_only_what_changed(built_small_copy, monkeypatch):
    sources, data = built_small_copy
    before = _versions(data / "lake")
    invocations = _dbt_invocations(data)
    retrofit(sources, 3, 1)
    result = build(sources, data)
    assert result.ok, result.failed
    state = json.loads((data / "build" / "shards.json").read_text())
    assert len(state["thread"]["rebuilt"]) == 1 < len(state["thread"]["digests"]), state["thread"]["rebuilt"]
    after = _versions(data / "lake")
    changed = {k for k in after if after[k] != before.get(k)}
    assert {"thread/unit_configuration", "thread/unit_configuration_history", "twin/unit_twin"} <= changed
    # Tables a retrofit cannot change keep their version: no copy of what did not change.
    assert not changed & {"thread/parts", "thread/part_revisions", "thread/bom_lines", "thread/ecos",
                          "raw/plm/parts", "raw/mes/units"}
    # dbt rebuilt what the changed service events reach, not the PLM-only models beside them.
    done = _materialized(result)
    assert {"thread/service_events", "thread/unit_configuration", "intermediate/int_shards_rows_summarized",
            "intermediate/int_shards_parts_named"} <= done, done
    assert not done & {"thread/ecos", "thread/bom_lines", "intermediate/int_structures_exploded",
                       "staging/stg_plm__part_revisions"}, done
    refreshed = [s for s in result.steps if s.key == "twin/unit_twin"]
    assert refreshed and refreshed[0].detail.startswith("1 twin refreshed")
    # Two dbt invocations: the shard digests and what they read, then what the change reaches in
    # the unit's shard, without the per-unit models whose family a retrofit leaves as it was.
    assert len(_dbt_invocations(data) - invocations) == 2
    left = {s.key: s.detail for s in result.steps if s.key in ("thread/unit_as_built", "thread/unit_as_designed")}
    assert left == dict.fromkeys(("thread/unit_as_built", "thread/unit_as_designed"), "unchanged (not rebuilt)")
    # An ECO changes the effectivity classes the digests read, which are rebuilt first.
    invocations = _dbt_invocations(data)
    compared = []
    monkeypatch.setattr(twins, "changes", lambda *a, changes=twins.changes, **k: compared.append(k) or changes(*a, **k))
    release_eco(sources, 3, 1, "retrofit")
    result = build(sources, data)
    assert result.ok, result.failed
    assert len(_dbt_invocations(data) - invocations) == 2
    # It changes no unit's configuration: its shards' twins keep their stored configuration aspect.
    assert compared[-1]["configuration_kept_where"] not in (None, "false"), compared
    # The digests are computed again from what the MES and service rows name, kept as they were:
    # not from every as-built row again.
    done = _materialized(result)
    assert "intermediate/int_shards_digested" in done and not done & {
        "intermediate/int_shards_rows_summarized", "intermediate/int_shards_parts_named"}, done
    assert json.loads((data / "build" / "shards.json").read_text())["thread"]["rebuilt"]
    # An ECO effective only for what is built from next year on: the units using its part get its
    # ECO impact (a retrofit is now pending), not new designed structures or deviations, which it
    # does not change (shard families `designed`, `deviations`).
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    part, rev = con.execute("SELECT part_number, revision FROM as_built_components ORDER BY 1, 2 LIMIT 1").fetchone()
    con.close()
    before = _versions(data / "lake")
    impact_rows = "SELECT eco_number, serial_number, rowid FROM thread.eco_impact"
    stored = {(e, s): r for e, s, r in query(data / "build" / "build.duckdb", impact_rows)}
    twins_pending = "SELECT sum(pending_retrofits) FROM twin.unit_twin"
    pending_before = query(data / "warehouse.duckdb", twins_pending)[0][0]
    next_year = (date.fromisoformat(horizon(sources)[:10]) + timedelta(days=365)).isoformat()
    write_eco(sources, "ECO-7800", part, rev, rev + "Y", horizon(sources), next_year, "retrofit")
    result = build(sources, data)
    assert result.ok, result.failed
    # No per-unit model but eco_impact has a shard to rebuild: dbt does not run them at all.
    left = {s.key for s in result.steps if s.detail == "unchanged (not rebuilt)"}
    assert {"thread/unit_as_designed", "thread/unit_deviations", "thread/unit_configuration",
            "thread/part_field_reliability"} <= left and "thread/eco_impact" not in left, left
    # ...and only the new ECO's: every other ECO's rows stay where they were in the build database
    # (a row deleted and computed again would come back with a new row id).
    now = {(e, s): r for e, s, r in query(data / "build" / "build.duckdb", impact_rows)}
    assert {k: now.get(k) for k in stored} == stored
    assert {e for e, _ in set(now) - set(stored)} == {"ECO-7800"}
    after = _versions(data / "lake")
    changed = {k for k in after if after[k] != before.get(k)}
    assert "thread/eco_impact" in changed and not changed & {"thread/unit_as_designed", "thread/unit_deviations"}, changed
    # Its twins' configuration is as it was: their components are neither stored nor published again.
    assert "_state/twin/units/unit_twin" in changed, changed
    assert not changed & {"_state/twin/units/unit_components", "twin/unit_components"}, changed
    pending = query(data / "warehouse.duckdb", "SELECT count(*) FROM thread.eco_impact "
                    "WHERE eco_number = 'ECO-7800' AND impact = 'retrofit_pending'")[0][0]
    assert pending > 0
    # ...and every twin it reaches counts it, though their configuration was not evaluated again.
    assert compared[-1]["configuration_kept_where"] not in (None, "false"), compared
    assert query(data / "warehouse.duckdb", twins_pending)[0][0] == pending_before + pending
    # ...and published as those rows alone, not as the rows of every shard its units are in.
    replaced = lake.table(lake.published_table(data / "lake", "thread", "eco_impact")).history(1)[0]
    assert replaced["operationParameters"].get("predicate") == "eco_number = 'ECO-7800'", replaced  # as Delta writes it


def test_a_day_of_telemetry_rebuilds_no_shard_and_refreshes_the_twins(built_small_copy, monkeypatch):
    """No per-unit model of the thread reads telemetry: a day of readings alone digests no shard
    and rebuilds none, while the telemetry marts and the twins follow the readings. The dbt tests
    of what was rebuilt are the results of their (blocking) asset checks."""
    import dagster as dg

    from orchestration.build import run_build
    from orchestration.definitions import defs

    sources, data = built_small_copy
    stored = json.loads((data / "build" / "shards.json").read_text())
    before, telemetry_before = stored["thread"]["digests"], stored["telemetry"]
    twin_sql = "SELECT serial_number, last_telemetry_at, refreshed_at FROM twin.unit_twin"
    twins_before = {s: (t, r) for s, t, r in query(data / "warehouse.duckdb", twin_sql)}
    components = [twins.state_dir(data / "lake") / "unit_components",
                  lake.published_table(data / "lake", "twin", "unit_components")]
    components_before = [lake.table(c).version() for c in components]
    telemetry_day(sources)
    drawn = []
    monkeypatch.setattr(report, "chart_health_over_time",
                        lambda con, draw=report.chart_health_over_time: drawn.append(1) or draw(con))
    with dg.DagsterInstance.ephemeral() as instance:
        settings = thread_env(monkeypatch, sources, data)
        result = run_build(defs, instance, settings)
        assert result.ok, result.failed
        logs = [e for run in instance.get_runs() for e in instance.all_logs(run.run_id)]
        # The fleet-health chart is drawn from the day's new health; a publish after a retrofit,
        # which leaves that table as it was, shows the same chart without drawing it again (below).
        chart = instance.get_latest_materialization_event(WAREHOUSE_KEY).asset_materialization.metadata
        assert drawn == [1] and report.HEALTH_OVER_TIME_TABLE in chart["written"].value
        # The dbt step's own results: its models' outputs and its tests' check results.
        results = {e.dagster_event.event_specific_data.step_output_handle.output_name for e in logs
                   if e.step_key == "thread_dbt" and e.dagster_event
                   and e.dagster_event.event_type == dg.DagsterEventType.STEP_OUTPUT}
        assert {"thread__fleet_health_daily",
                "intermediate__int_fleet_health_days_digested_unique_int_fleet_health_days_digested_day"} <= results, results
        stored = json.loads((data / "build" / "shards.json").read_text())
        assert stored["thread"]["rebuilt"] == [] and stored["thread"]["digests"] == before
        # The twins' summaries of the telemetry are kept per version of it: these are new.
        assert stored["telemetry"]["code"] != telemetry_before["code"]
        assert stored["telemetry"]["digests"] != telemetry_before["digests"]
        done = _materialized(result)
        assert {"staging/stg_service__telemetry", "thread/fleet_health_daily"} <= done, done
        # What the estimates read and no reading reaches is reported as it was, not built again.
        kept = {s.key: s.detail for s in result.steps if s.key in ("thread/units", "thread/service_events")}
        assert kept == dict.fromkeys(("thread/units", "thread/service_events"), "unchanged (not rebuilt)"), kept
        # ...and its tests are reported as passed on the rows they passed on, not left unreported
        # (Dagster would let the steps after them run ungated, with a warning).
        carried = [e.dagster_event.event_specific_data for e in logs if e.step_key == "thread_dbt"
                   and e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
                   and e.dagster_event.event_specific_data.asset_key == dg.AssetKey(["thread", "units"])]
        assert carried and all(c.passed and c.metadata["rebuilt"].value is False for c in carried), carried
        run_results = json.loads((data / "build" / "dbt_target" / "run_results.json").read_text())
        ran = {r["unique_id"] for r in run_results["results"]}
        assert "model.digital_thread.fleet_health_daily" in ran and not ran & {
            "model.digital_thread.units", "model.digital_thread.service_events"}, ran
        # The views the new readings reach are read as they are, not created again.
        views = ("staging/stg_service__telemetry", "twin_logic/unit_sensor_state", "twin_logic/unit_twin")
        assert {s.key: s.detail for s in result.steps if s.key in views} == \
            dict.fromkeys(views, "view, not created again")
        assert not ran & {f"model.digital_thread.{v.split('/')[1]}" for v in views}, ran
        assert not done & {"intermediate/int_shards_digested", "intermediate/int_shards_changed",
                           "thread/unit_configuration", "thread/eco_impact", "thread/unit_as_built"}, done
        # fleet_health_daily reads the new day's readings only (its range, written into the SQL).
        new_day = max(p.stem for p in (sources / "service" / "telemetry").glob("*.parquet"))
        compiled = next((data / "build" / "dbt_target" / "compiled").rglob("fleet_health_daily.sql")).read_text()
        assert f"t.ts >= date '{new_day}' and t.ts < date '{new_day}' + 1" in compiled, compiled
        twins_after = {s: (t, r) for s, t, r in query(data / "warehouse.duckdb", twin_sql)}
        assert twins_after.keys() == twins_before.keys()
        read = {s for s in twins_after if twins_after[s][0] != twins_before[s][0]}
        refreshed = {s for s in twins_after if twins_after[s][1] != twins_before[s][1]}
        assert read and refreshed == read, "the twins with a new reading, and only they, were refreshed"
        # ...for their readings: what they hold is neither computed nor stored nor published again.
        assert [lake.table(c).version() for c in components] == components_before

    # Last, since a retrofit rebuilds a shard: its publish keeps the chart (see above), also when it
    # reports to another Dagster instance (a new `thread serve` home, the bench's copies).
    retrofit(sources, 3, 1)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_build(defs, instance, settings).ok
        after = instance.get_latest_materialization_event(WAREHOUSE_KEY).asset_materialization.metadata
        assert report.HEALTH_OVER_TIME_TABLE not in after["written"].value and after["written"].value
        assert drawn == [1] and after["fleet_health"] == chart["fleet_health"]


def _state(sections) -> dict:
    (state,) = sections
    assert len(state.rows) == 1, state.rows
    return dict(zip(state.columns, state.rows[0]))


def test_twin_history_keeps_every_published_state(built_small_copy):
    """A retrofit after the first build: the twin's earlier state stays answerable by --as-of,
    and twin-changes says what changed and why."""
    sources, data = built_small_copy
    warehouse = data / "warehouse.duckdb"
    before = query(warehouse, "select count(*) from twin.unit_twin_history")[0][0]
    assert before == query(warehouse, "select count(*) from twin.unit_twin")[0][0]  # one state per twin
    retrofit(sources, 3, 1)
    assert build(sources, data).ok
    (serial,) = query(warehouse, "select serial_number from thread.service_events where event_id = 'SE-PROP-1'")[0]
    changes = ask(warehouse, "twin-changes", serial)[0]
    states = [dict(zip(changes.columns, r)) for r in changes.rows]
    assert len(states) == 2 and states[0]["valid_to"] == states[1]["valid_from"] and states[1]["valid_to"] is None
    assert states[0]["changes"] == "new twin"
    assert "configuration" in states[1]["changes"] and "configuration" in states[1]["refresh_reasons"]
    assert states[0]["configuration_hash"] != states[1]["configuration_hash"]
    # Between the two publishes: the first state; at or after the second: the live twin's.
    between = _state(ask(warehouse, "twin", serial, as_of=str(states[1]["valid_from"] - timedelta(seconds=1))))
    assert between["configuration_hash"] == states[0]["configuration_hash"]
    after = _state(ask(warehouse, "twin", serial, as_of=str(states[1]["valid_from"])))
    live = _state(ask(warehouse, "twin", serial)[:1])
    assert after["configuration_hash"] == live["configuration_hash"] == states[1]["configuration_hash"]
    with pytest.raises(AskError, match="No twin of .* was published at or before 2000-01-01"):
        ask(warehouse, "twin", serial, as_of="2000-01-01")
    # Only the retrofitted unit got a new state; the rest of the history was carried over.
    assert query(warehouse, "select count(*) from twin.unit_twin_history")[0][0] == before + 1
    assert ask(warehouse, "twin-changes", serial, since=str(states[1]["valid_from"]))[0].rows == changes.rows[1:]
