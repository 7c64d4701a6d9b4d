"""Twins per unit: partitions, incremental refresh with reasons, staleness, and the AAS export."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import dagster as dg
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest
from basyx.aas import model
from basyx.aas.adapter.json import read_aas_json_file

from orchestration import lake, twins
from orchestration.aas import UnknownSerial, export
from orchestration.build import run_build
from orchestration.defs.twins import OBSERVED
from orchestration.publish import Silence, publish
from orchestration.simulate import advance, simulate
from tests.helpers import SMALL, query, thread_env


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A small enterprise built once, then advanced by two days and built again, on one instance."""
    root = tmp_path_factory.mktemp("live")
    sources, data = root / "sources", root / "data"
    simulate(sources, SMALL)
    from orchestration.definitions import defs

    with pytest.MonkeyPatch.context() as mp:
        settings = thread_env(mp, sources, data)
        instance = dg.DagsterInstance.ephemeral()
        first = run_build(defs, instance, settings)
        assert first.ok, first.failed
        before = dict(query(data / "warehouse.duckdb", "select serial_number, refreshed_at from twin.unit_twin"))
        state_before, between = _twin_states(data), datetime.now(timezone.utc)
        advance(sources, 2)
        second = run_build(defs, instance, settings)
        assert second.ok, second.failed
    yield {"instance": instance, "data": data, "sources": sources, "before": before, "second": second,
           "state_before": state_before, "between": between}
    instance.dispose()


def _twin_states(data) -> dict[str, dict]:
    rows = lake.read(twins.state_dir(data / "lake") / "unit_twin", columns=["serial_number", *OBSERVED]).to_pylist()
    return {r.pop("serial_number"): r for r in rows}


def test_a_partition_per_unit_with_its_materializations(live):
    instance, data = live["instance"], live["data"]
    units = {s for (s,) in query(data / "warehouse.duckdb", "select serial_number from thread.units where status <> 'scrapped'")}
    partitions = set(instance.get_dynamic_partitions("units"))
    assert units <= partitions
    materialized = instance.get_materialized_partitions(dg.AssetKey(["twin", "unit_twin"]))
    assert units <= materialized


def test_the_second_build_refreshed_only_changed_twins_and_says_why(live):
    data, before = live["data"], live["before"]
    after = dict(query(data / "warehouse.duckdb", "select serial_number, refreshed_at from twin.unit_twin"))
    refreshed = {s for s in after if s not in before or after[s] != before[s]}
    kept = {s for s in after if s in before and after[s] == before[s]}
    assert refreshed and kept, "two days of activity change some twins, not all"
    detail = next(s.detail for s in live["second"].steps if s.key == "twin/unit_twin")
    assert detail.startswith(f"{len(refreshed)} twin")  # "... twins refreshed (a run over N partitions)"
    # The change set records the reasons; every refreshed twin had one.
    detected = lake.read(twins.pending_table(data / "lake")).to_pylist()
    reasons = {r["serial_number"]: r["reasons"] for r in detected}
    assert refreshed <= set(reasons)
    assert {"new unit", "telemetry"} & {x for rs in reasons.values() for x in rs}
    # ...and nothing is waiting any more.
    assert twins.pending(data / "lake").num_rows == 0
    assert query(data / "warehouse.duckdb", "select count(*) from twin.unit_twin where is_stale")[0][0] == 0


def test_a_units_partition_shows_its_twin_and_the_runs_are_named(live):
    """The partition page of a unit: its health, RUL, retrofits, hash and why it was refreshed; and
    every build stage ran as a named job the UI lists."""
    instance, data = live["instance"], live["data"]
    serial, health, config = query(data / "warehouse.duckdb", "select serial_number, health_state, "
                                   "configuration_hash from twin.unit_twin order by 1 limit 1")[0]
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["twin", "unit_twin"]), asset_partitions=[serial]), limit=1).records
    assert records, "no observation on the unit's partition"
    meta = {k: v.value for k, v in records[0].asset_observation.metadata.items()}
    assert meta["health_state"] == health and meta["configuration_hash"] == config
    assert {"pending_retrofits", "worst_sensor", "rul_model_version", "refreshed_because"} <= set(meta)
    jobs = {r.job_name for r in instance.get_runs()}
    assert {"build_sources", "build_thread", "build_twins", "build_publish"} <= jobs, jobs


def test_a_units_partition_is_observed_when_its_twins_state_changes(live):
    """A refresh that changed only readings (RUL hours, the last reading) writes no observation:
    at 10,000 units a day of telemetry would otherwise add a Dagster event for every unit."""
    instance, data, first = live["instance"], live["data"], live["state_before"]
    now = _twin_states(data)
    refreshed = {s for s, at in dict(query(data / "warehouse.duckdb",
                                           "select serial_number, refreshed_at from twin.unit_twin")).items()
                 if live["before"].get(s) != at}
    changed = {s for s in first.keys() | now.keys() if first.get(s) != now.get(s)}
    readings_only = refreshed - changed
    assert changed and readings_only, "two days change some twins' state, and only the readings of others"
    records = instance.fetch_observations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(["twin", "unit_twin"]), after_timestamp=live["between"].timestamp()), limit=10_000).records
    assert {r.partition_key for r in records} == changed


def test_the_twin_checks_pass_and_catch_a_wrong_twin(live, tmp_path):
    instance, data = live["instance"], live["data"]
    evaluations = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["twin", "unit_twin"]), name) for name in twins.CHECKS])
    assert len(evaluations) == len(twins.CHECKS)
    assert all(e.status.value == "SUCCEEDED" for e in evaluations.values()), evaluations
    # A copy whose stored components of one unit lost a row: its hash no longer matches.
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    serials = [s for (s,) in query(copy / "warehouse.duckdb", "select serial_number from twin.unit_twin order by 1")]
    components = twins.state_dir(copy / "lake") / "unit_components"
    rows = lake.read(components)
    first = rows.filter(pa.compute.equal(rows["serial_number"], serials[0]))
    lake.write(components, first.slice(1), "overwrite", batch_id="corrupt",
               predicate=f"serial_number = '{serials[0]}'")
    result = twins.check(copy / "build" / "build.duckdb", copy / "lake", serials)
    assert result["one_twin_per_live_unit"][0] and result["computed_from_current_inputs"][0]
    passed, meta = result["configuration_hash_matches_components"]
    assert not passed and meta["failing_units"] == 1 and meta["examples"] == serials[0]
    # A few units at a time (as at 100,000 units, 5,000 at a time) finds the same, and only that.
    assert twins.check(copy / "build" / "build.duckdb", copy / "lake", serials, size=7) == result
    # What a refresh computed, given rather than computed again: a unit whose stored inputs are not
    # those (a lost or stale write) fails, and only that one.
    stored = lake.read(twins.state_dir(copy / "lake") / "inputs", columns=["serial_number", "input_hash"])
    given = stored.set_column(1, "input_hash", pa.array(
        ["changed since" if s == serials[-1] else h for s, h in zip(*stored.to_pydict().values())]))
    passed, meta = twins.check(copy / "build" / "build.duckdb", copy / "lake", serials, current_inputs=given)[
        "computed_from_current_inputs"]
    assert not passed and meta["examples"] == serials[-1]
    assert twins.check(copy / "build" / "build.duckdb", copy / "lake", serials, current_inputs=stored)[
        "computed_from_current_inputs"][0]


def test_comparing_only_the_telemetry_finds_what_comparing_everything_finds(live, tmp_path):
    """In shards whose thread rows did not change, the change set evaluates only the telemetry
    aspects and takes the others as stored: same units, reasons and hashes as evaluating all; a
    unit come or gone there means the thread did change after all, and all is evaluated."""
    import duckdb

    copy = tmp_path / "data"
    shutil.copytree(live["data"], copy)
    build_db, inputs = copy / "build" / "build.duckdb", twins.state_dir(copy / "lake") / "inputs"
    stored = lake.read(inputs)
    serials = sorted(stored["serial_number"].to_pylist())
    older_readings, older_estimate, gone = serials[0], serials[len(serials) // 2], serials[-1]
    con = duckdb.connect()
    con.register("stored", stored)
    as_if = con.execute(f"""
        SELECT * REPLACE ({twins.input_hash()} AS input_hash) FROM (
            SELECT * REPLACE (
                CASE WHEN serial_number = '{older_readings}' THEN 'older readings' ELSE telemetry_hash END
                    AS telemetry_hash,
                CASE WHEN serial_number = '{older_estimate}' THEN 'older estimate' ELSE rul_hash END AS rul_hash)
            FROM stored)""").fetch_arrow_table()
    lake.write(inputs, as_if, "overwrite", batch_id="test")

    def compare(**where) -> dict:
        found = twins.changes(build_db, copy / "lake", **where).to_pylist()
        return {r["serial_number"]: (r["reasons"], r["input_hash"]) for r in found}

    everything = compare(where="TRUE")
    assert {s: r for s, (r, _) in everything.items()} == {older_readings: ["telemetry"], older_estimate: ["rul"]}
    assert compare(where="false", telemetry_where="TRUE") == everything
    # Smaller: with the first unit's shard evaluated whole and the rest for their telemetry.
    first = f"serial_number = '{older_readings}'"
    assert compare(where=first, telemetry_where=f"NOT ({first})") == everything
    lake.write(inputs, as_if.filter(pa.compute.not_equal(as_if["serial_number"], gone)), "overwrite", batch_id="test")
    assert compare(where="false", telemetry_where="TRUE") == compare(where="TRUE") == \
        everything | {gone: (["new unit"], compare(where="TRUE")[gone][1])}


def test_a_unit_waiting_for_its_refresh_stays_to_refresh_where_only_telemetry_is_compared(live, tmp_path):
    """A unit whose change was detected but whose twin is not refreshed yet has stored aspects
    older than those it will be refreshed from: when a day of readings arrives before its refresh,
    and its shard is compared for the telemetry only, it is evaluated whole and stays to refresh
    (taking its stored aspects as current would have its change counted as done)."""
    import duckdb

    copy = tmp_path / "data"
    shutil.copytree(live["data"], copy)
    build_db, inputs = copy / "build" / "build.duckdb", twins.state_dir(copy / "lake") / "inputs"
    stored = lake.read(inputs)
    waiting = sorted(stored["serial_number"].to_pylist())[1]
    con = duckdb.connect()
    con.register("stored", stored)
    lake.write(inputs, con.execute(f"""
        SELECT * REPLACE ({twins.input_hash()} AS input_hash) FROM (
            SELECT * REPLACE (CASE WHEN serial_number = '{waiting}' THEN 'older configuration'
                                   ELSE configuration_hash END AS configuration_hash)
            FROM stored)""").fetch_arrow_table(), "overwrite", batch_id="test")

    def compare(**where) -> dict:
        found = twins.changes(build_db, copy / "lake", **where).to_pylist()
        return {r["serial_number"]: (r["reasons"], r["input_hash"]) for r in found}

    whole = compare(where="TRUE")
    assert {s: r for s, (r, _) in whole.items()} == {waiting: ["configuration"]}
    lake.write(twins.pending_table(copy / "lake"), pa.table({
        "serial_number": pa.array([waiting]),
        "reasons": pa.array([["configuration"]], pa.list_(pa.string())),
        "input_hash": pa.array([whole[waiting][1]]),
        "detected_at": pa.array([datetime.now(timezone.utc)], pa.timestamp("us", tz="UTC")),
    }), "overwrite", batch_id="test")
    assert compare(where="false", telemetry_where="TRUE", waiting=twins.pending(copy / "lake")) == whole


def test_twins_not_yet_refreshed_are_published_stale_with_the_reason(live, tmp_path):
    data = live["data"]
    # Pretend the thread moved on but the twins have not caught up: forget one twin's inputs.
    victim = lake.read(twins.state_dir(data / "lake") / "inputs")["serial_number"][0].as_py()
    detected = pa.table({
        "serial_number": pa.array([victim]),
        "reasons": pa.array([["telemetry"]], pa.list_(pa.string())),
        "input_hash": pa.array(["a hash the twin was not computed from"]),
        "detected_at": pa.array([datetime.now(timezone.utc)], pa.timestamp("us", tz="UTC")),
    })
    saved = lake.read(twins.pending_table(data / "lake"))
    lake.write(twins.pending_table(data / "lake"), detected, "overwrite", batch_id="test")
    try:
        out = tmp_path / "warehouse.duckdb"
        publish(data / "build" / "build.duckdb", out, data / "lake")
        rows = dict(query(out, "select serial_number, stale_reason from twin.unit_twin where is_stale"))
        assert rows == {victim: "refresh pending: telemetry"}
    finally:
        lake.write(twins.pending_table(data / "lake"), saved, "overwrite", batch_id="test")


def test_a_late_source_marks_every_twin_stale(live, tmp_path):
    data = live["data"]
    out = tmp_path / "warehouse.duckdb"
    publish(data / "build" / "build.duckdb", out, data / "lake", now=datetime.now(timezone.utc) + timedelta(days=3))
    total, stale = query(out, "select count(*), count(*) filter (where is_stale) from twin.unit_twin")[0]
    assert stale == total > 0
    reason = query(out, "select any_value(stale_reason) from twin.unit_twin")[0][0]
    assert reason.startswith("source past its freshness limit: plm, mes, erp, service")


def test_a_unit_whose_telemetry_stopped_is_unknown_and_stale(live, tmp_path):
    """The test enterprise's telemetry ended months ago: at a 72 h limit every unit with telemetry
    is silent, except the product given a longer limit of its own."""
    data = live["data"]
    twins_now = query(data / "warehouse.duckdb", "select serial_number, product_part_number, health_state, "
                                                 "last_telemetry_at from twin.unit_twin")
    products = sorted({p for _, p, _, t in twins_now if t is not None})
    assert len(products) >= 2
    patient = products[0]
    out = tmp_path / "warehouse.duckdb"
    publish(data / "build" / "build.duckdb", out, data / "lake", silence=Silence.parse(f"72, {patient}=1e6"))
    after = {s: (h, stale, reason) for s, h, stale, reason in
             query(out, "select serial_number, health_state, is_stale, stale_reason from twin.unit_twin")}
    for serial, product, health, last in twins_now:
        if last is None or product == patient:  # no telemetry to fall silent, or within its limit
            assert after[serial] == (health, False, None), serial
        else:
            assert after[serial][:2] == ("unknown", True), serial
            assert after[serial][2] == f"telemetry silent since {last:%Y-%m-%d %H:%M} UTC (limit 72 h)"
    assert any(h != "unknown" for _, p, h, t in twins_now if t is not None and p != patient)
    with pytest.raises(ValueError, match="THREAD_TELEMETRY_SILENCE_HOURS: 'HX=soon' is not a positive number"):
        Silence.parse("72,HX=soon")


def _conformance(path) -> str:
    """aas-test-engines' verdict on an exported file: empty when it conforms, else its report."""
    import contextlib
    import io

    from aas_test_engines import file as checker

    with open(path, "rb" if path.suffix == ".aasx" else "r") as f:
        result = (checker.check_aasx_file if path.suffix == ".aasx" else checker.check_json_file)(f)
    if result.ok():
        return ""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result.dump()
    return out.getvalue()


def test_twin_exports_as_an_asset_administration_shell(live, tmp_path):
    data = live["data"]
    wh = data / "warehouse.duckdb"
    serial = query(wh, """
        select t.serial_number from twin.unit_twin t join thread.unit_as_built_tree b using (serial_number)
        where t.last_telemetry_at is not null group by 1 order by count(*) desc, 1 limit 1""")[0][0]
    (path,) = export(wh, serial, tmp_path / "twin.json")
    assert _conformance(path) == ""  # the official checker, JSON
    store = read_aas_json_file(str(path), failsafe=False)  # the AAS reference library, strict
    shells = [o for o in store if isinstance(o, model.AssetAdministrationShell)]
    assert len(shells) == 1
    specific = {(i.name, i.value) for i in shells[0].asset_information.specific_asset_id}
    assert ("serialNumber", serial) in specific
    submodels = {o.id_short: o for o in store if isinstance(o, model.Submodel)}
    assert set(submodels) == {"Identification", "BillOfMaterial", "OperationalData"}
    # No template claimed that is not filled: the Identification is the thread's own.
    assert "nameplate" not in str(submodels["Identification"].semantic_id).lower()
    bom = submodels["BillOfMaterial"]
    assert bom.get_referable("ArcheType").value == "Full"

    def nodes(entity, depth=1):
        for child in entity.statement:
            if isinstance(child, model.Entity):
                yield child, depth
                yield from nodes(child, depth + 1)

    entry = bom.get_referable("EntryNode")
    found = list(nodes(entry))
    edges = query(wh, "select count(*) from thread.unit_as_built_tree where serial_number = ? "
                      "and parent_part_number is not null", [serial])[0][0]  # the product is the entry node
    assert len(found) >= edges and max(d for _, d in found) >= 2, "a hierarchy, not a flat list"
    has_part = [r for r in entry.statement if isinstance(r, model.RelationshipElement)]
    assert len(has_part) == sum(1 for s in entry.statement if isinstance(s, model.Entity))
    operational = submodels["OperationalData"]
    sensors = [e for e in operational.submodel_element if isinstance(e, model.SubmodelElementCollection)]
    n_sensors = query(wh, "select count(*) from twin.unit_sensor_state where serial_number = ?", [serial])[0][0]
    assert len(sensors) == n_sensors > 0
    assert operational.get_referable("RemainingUsefulLifeHours") is not None
    with pytest.raises(UnknownSerial, match="no such unit"):
        export(wh, "NO-SUCH-1", tmp_path / "x.json")


def test_the_fleet_exports_as_one_aasx_or_a_folder_that_conform(live, tmp_path):
    from orchestration.aas import serials

    wh = live["data"] / "warehouse.duckdb"
    fleet = serials(wh)[:4]
    (package,) = export(wh, fleet, tmp_path / "fleet.aasx")
    assert _conformance(package) == ""  # the official checker, AASX
    from basyx.aas.adapter import aasx

    store, files = model.DictObjectStore(), aasx.DictSupplementaryFileContainer()
    with aasx.AASXReader(str(package)) as reader:
        reader.read_into(store, files)
    assert {s.asset_information.specific_asset_id.pop().value for s in store
            if isinstance(s, model.AssetAdministrationShell)} == set(fleet)
    folder = export(wh, fleet, tmp_path / "fleet", "json")
    assert sorted(p.name for p in folder) == sorted(f"{s}.json" for s in fleet)
    assert _conformance(folder[0]) == ""


NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _state(lake_dir) -> dict[str, list]:
    return {name: sorted(lake.read(twins.state_dir(lake_dir) / name).to_pylist(), key=repr)
            for name in (*twins.TABLES, "inputs")}


def test_twins_computed_a_few_units_at_a_time_equal_one_pass(live, tmp_path):
    """At 100,000 units twins are computed and stored in serial-number chunks; chunks of 7 here."""
    data = live["data"]
    build_db = data / "build" / "build.duckdb"
    every = sorted(twins.units(build_db))
    assert twins.units(build_db, size=7) == set(every)
    lakes = {}
    for size in (7, twins.CHUNK_UNITS):
        lakes[size] = tmp_path / f"lake-{size}"
        shutil.copytree(data / "lake", lakes[size], ignore=shutil.ignore_patterns("twin"))
        new = twins.changes(build_db, lakes[size], size=size)
        assert new["serial_number"].to_pylist() == every
        assert {tuple(r) for r in new["reasons"].to_pylist()} == {("new unit",)}
        # A first change set leaves the hashing to the refresh: its units are pending until refreshed.
        lake.write(twins.pending_table(lakes[size]), new, "overwrite", batch_id="t")
        assert twins.pending(lakes[size])["serial_number"].to_pylist() == every
        twins.refresh(build_db, lakes[size], every[:3], batch_id="t", now=NOW, size=size)
        assert twins.pending(lakes[size])["serial_number"].to_pylist() == every[3:]
        twins.refresh(build_db, lakes[size], every, batch_id="t", now=NOW, size=size)
        assert twins.pending(lakes[size]).num_rows == 0
    assert _state(lakes[7]) == _state(lakes[twins.CHUNK_UNITS])
    assert twins.changes(build_db, lakes[7], size=7).num_rows == 0
    # An incremental change set looks at the changed shards only (a filter), still a range at a time.
    fresh = tmp_path / "lake-fresh"
    shutil.copytree(data / "lake", fresh, ignore=shutil.ignore_patterns("twin"))
    cut = every[len(every) // 2]
    part = twins.changes(build_db, fresh, size=7, where=f"serial_number >= '{cut}'")
    assert part["serial_number"].to_pylist() == [s for s in every if s >= cut]
    # Refreshing scattered units a chunk of 3 at a time replaces theirs and leaves the others alone.
    before = _state(lakes[7])
    twins.refresh(build_db, lakes[7], every[::5], batch_id="again", now=NOW, size=3)
    assert _state(lakes[7]) == before
    # Twins refreshed for their readings only: the same rows and hashes, their components kept
    # as stored, not written again.
    _, _, kept = twins.refresh(build_db, lakes[7], every[::5], batch_id="readings", now=NOW, size=3,
                               configuration_kept=set(every[::2]))
    assert kept == set(every[::5]) & set(every[::2]) and _state(lakes[7]) == before
    components = twins.state_dir(lakes[7]) / "unit_components"
    lost, whole = every[0], every[5]
    lake.write(components, lake.read(components).slice(0, 0), "overwrite", batch_id="lose",
               predicate=f"serial_number IN ('{lost}', '{whole}')")
    _, _, kept = twins.refresh(build_db, lakes[7], [lost, whole], batch_id="kept", now=NOW, configuration_kept={lost})
    assert kept == {lost}
    held = set(lake.read(components, columns=["serial_number"])["serial_number"].to_pylist())
    assert whole in held and lost not in held
    # (the twin checks of all its components find what was lost)
    passed, meta = twins.check(build_db, lakes[7], [lost, whole])["configuration_hash_matches_components"]
    assert not passed and meta["examples"] == lost
    # A twin whose configuration is not the stored one any more is refreshed whole after all.
    twin_state = twins.state_dir(lakes[7]) / "unit_twin"
    stored = lake.read(twin_state)
    older = stored.filter(pa.compute.equal(stored["serial_number"], lost))
    older = older.set_column(older.schema.get_field_index("configuration_hash"), "configuration_hash",
                             pa.array(["an older configuration"]))
    lake.write(twin_state, older, "overwrite", batch_id="older", predicate=f"serial_number = '{lost}'")
    _, _, kept = twins.refresh(build_db, lakes[7], [lost], batch_id="whole", now=NOW, configuration_kept={lost})
    assert kept == set() and lost in set(lake.read(components, columns=["serial_number"])["serial_number"].to_pylist())
    assert _state(lakes[7]) == before


def test_a_refresh_hashes_the_inputs_from_the_twin_rows_it_computed(live):
    """The refresh hashes each twin's inputs from the rows it has just computed (dbt's
    unit_twin_inputs over the chunk's rows), not by evaluating the twin views a second time; the
    hashes are those of the view, which the change set compares with."""
    data = live["data"]
    build_db = data / "build" / "build.duckdb"
    con = lake.duck(build_db, read_only=True)
    try:
        twins._with_health(con, data / "lake")
        inputs_of_chunk = twins._inputs_of_chunks(con)
        assert inputs_of_chunk, "DuckDB's text of twin_logic.unit_twin_inputs names the twin views"
        serials = sorted(twins.units(build_db))[3:12]
        by_view = twins._compute(con, serials)[0]["inputs"].sort_by("serial_number")
        from_rows = twins._compute(con, serials, inputs_of_chunk)[0]["inputs"].sort_by("serial_number")
    finally:
        con.close()
    assert by_view["serial_number"].to_pylist() == serials
    assert from_rows.equals(by_view)


def test_per_unit_tables_are_published_in_serial_order(built_small):
    """One unit's rows then sit in a few row groups that DuckDB's zone maps find (the AAS bill of
    material reads a unit's tree and components: at 100,000 units, unordered, 390 and 66 ms)."""
    from orchestration import dbt_project

    by_unit = dbt_project.tagged("sharded", "thread") - set(dbt_project.published_order("thread"))
    names = [f"thread.{t}" for t in sorted(by_unit)] + [f"twin.{t}" for t in twins.TABLES]
    assert "thread.unit_as_built_tree" in names and "twin.unit_components" in names
    for name in names:
        stored = [s for (s,) in query(built_small / "warehouse.duckdb", f"SELECT serial_number FROM {name}")]
        assert len(set(stored)) > 20 and stored == sorted(stored), name


def test_a_fleet_past_the_partition_limit_gets_shards_and_refreshes_only_changed_units(built_small_copy, monkeypatch):
    """With THREAD_TWIN_UNITS_PER_PARTITION unset, a Dagster instance new to a fleet larger than
    twins.PER_UNIT_MAX (10 here, 1,000 in the product) gets shard partitions of
    consecutive serials; a refresh still recomputes only the units whose inputs changed."""
    from orchestration.definitions import defs

    sources, data = built_small_copy
    monkeypatch.setattr(twins, "PER_UNIT_MAX", 10)
    settings = thread_env(monkeypatch, sources, data)
    assert settings.units_per_partition == 0
    twin_sql = "select serial_number, refreshed_at from twin.unit_twin"
    before = dict(query(data / "warehouse.duckdb", twin_sql))
    assert 10 * twins.SHARDED_MAX_PARTITIONS >= len(before) > 10, "the fleet needs shards of 10"
    advance(sources, 1)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_build(defs, instance, settings)
        assert result.ok, result.failed
        keys = list(instance.get_dynamic_partitions("units"))
        materialized = instance.get_materialized_partitions(dg.AssetKey(["twin", "unit_twin"]))
        observed = instance.fetch_observations(dg.AssetKey(["twin", "unit_twin"]), limit=10).records
    after = dict(query(data / "warehouse.duckdb", twin_sql))
    refreshed = {s for s in after if before.get(s) != after[s]}
    assert refreshed and len(refreshed) < len(after), "a day of activity changes some twins, not all"
    assert keys and all(twins.key_size(k) == 10 for k in keys), keys
    assert {twins.partition_key(s, 10) for s in refreshed} == set(materialized) <= set(keys)
    assert twins.pending(data / "lake").num_rows == 0, "every changed unit was refreshed"
    assert not observed, "a shard's partition carries no per-unit observation"


def test_one_unit_s_twin_reads_only_its_part_of_the_telemetry(live, tmp_path):
    """The twin step computes a serial range at a time: the range must reach the telemetry scans.
    A CTE read twice in a twin view stopped it there (DuckDB materializes it, and a stored view
    loses `not materialized`), so every chunk read the whole fleet's readings."""
    import json

    build_db = live["data"] / "build" / "build.duckdb"
    con = lake.duck(build_db, read_only=True)
    try:
        unit = con.execute("SELECT min(serial_number) FROM staging.stg_service__telemetry").fetchone()[0]
        profile = tmp_path / "profile.json"
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute(f"PRAGMA profiling_output = '{profile}'")
        hashes = con.execute(f"SELECT * FROM twin_logic.unit_twin_inputs WHERE serial_number = '{unit}'").fetchall()
        con.execute("PRAGMA disable_profiling")
    finally:
        con.close()

    def telemetry_scans(node) -> list[dict]:
        info = node.get("extra_info") or {}
        own = [info] if node.get("operator_name") == "READ_PARQUET" and \
            "/raw/service/telemetry/" in str(info.get("Filename(s)")) else []
        return own + [s for c in node.get("children", []) for s in telemetry_scans(c)]

    scans = telemetry_scans(json.loads(profile.read_text()))
    assert len(hashes) == 1
    # The latest readings, then the 24 hours before them: each scan filtered by the unit (a
    # filter the Parquet reader applies to its row groups), none reading every unit's rows.
    assert len(scans) >= 2 and all(f"serial_number='{unit}'" in str(s.get("Filters")) for s in scans), scans
