"""Live twins: a Dagster partition per unit (per shard of consecutive serials past 1,000 units),
refreshed only where a unit's inputs changed.

`twin/changes` (after the dbt thread) compares each unit's twin inputs with those its twin was
computed from, records the change set and registers a partition for every new unit: the twin
layer is the only one that adds twin partitions. The change set becomes runs of the partitioned
twin asset for just those units, queued by the run that computed it (under `thread serve`) or
else requested by the twin-refresh sensor (a run covers a partition range; the
asset recomputes only the changed units inside it). A full rebuild of all twins is one run
(single-run backfill policy).
"""

import warnings
from datetime import datetime, timedelta, timezone

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from .. import fingerprints, lake, lineage, publish, rul, shards, twins
from ..fingerprints import Ledger
from ..resources import WriterLock
from ..settings import ThreadSettings
from . import runs
from .keys import LOGIC_KEYS, RUL_KEY, TWIN_CHANGES_KEY, TWIN_KEY, WAREHOUSE_KEY

UNITS = dg.DynamicPartitionsDefinition(name="units")
FULL_REFRESH_TAG = "thread/full_refresh"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def plan(instance: dg.DagsterInstance, thread: ThreadSettings, full: bool = False,
         pending: pa.Table | None = None) -> tuple[list[dict], list[str]]:
    """The twin runs to request now, as run tags (one partition range each), and the partitions
    to add first. The one planner: the sensor, `thread build` and the benchmark all use it.
    `pending`: the change set, when the caller holds it already (else read from the lake)."""
    known = list(instance.get_dynamic_partitions(UNITS.name))
    pending = twins.pending(thread.lake_dir) if pending is None else pending
    serials = pending["serial_number"].to_pylist() if pending is not None else []
    size = twins.units_per_partition(thread.units_per_partition, known, len(serials))
    ranges, new = twins.plan_runs(known, serials, size, full)
    tags = [{RANGE_START: a, RANGE_END: b, FULL_REFRESH_TAG: "true" if full else "false"} for a, b in ranges]
    return tags, new


def register_units(context: dg.AssetExecutionContext, thread: ThreadSettings, serials: list[str]) -> int:
    """Add a twin partition for every unit (or shard of units) not seen before; how many were added."""
    known = list(context.instance.get_dynamic_partitions(UNITS.name))
    fleet = 0
    if not known and not thread.units_per_partition:  # the size is chosen by fleet size only then
        stored = lake.read(twins.state_dir(thread.lake_dir) / "inputs", columns=["serial_number"])
        fleet = len(set(serials) | set(stored.column(0).to_pylist() if stored is not None else []))
    size = twins.units_per_partition(thread.units_per_partition, known, fleet)
    new = sorted({twins.partition_key(s, size) for s in serials} - set(known))
    if new:
        context.instance.add_dynamic_partitions(UNITS.name, new)
    return len(new)


def change_set_inputs(thread: ThreadSettings, run_id: str) -> str:
    """The change set is computed from one build of the thread and one set of estimates."""
    ledger = Ledger(thread.build_db)
    return fingerprints.digest([ledger.generation(run_id), ledger.get("rul")])


@dg.asset(
    key=TWIN_CHANGES_KEY,
    deps=[*LOGIC_KEYS, RUL_KEY],
    group_name="twin",
    kinds={"duckdb", "delta"},
    description="Which twins must be refreshed and why: each unit's twin inputs (unit_twin_inputs) "
    "against those its twin was last computed from. Written to lake/_state/twin/pending; new units get "
    "their twin partition here.",
    output_required=False,
)
def twin_changes(context: dg.AssetExecutionContext, thread: ThreadSettings, writer: WriterLock):
    ledger = Ledger(thread.build_db)
    inputs = change_set_inputs(thread, context.run_id)
    if ledger.unchanged("twin_changes", inputs):
        context.log.info("The thread and the estimates are as they were at the last change set: nothing to do.")
        return
    # Only the shards whose twins' inputs changed are compared unit by unit.
    digits, store = thread.shard_size_digits, shards.Store(thread.build_db)
    thread_digests = store.get("thread")
    # The telemetry's summaries stay valid while the build database reads the same version of it.
    built_from = ledger.get("thread_sources") if ledger.get("thread") else None
    telemetry_key = None if built_from is None else \
        f"{built_from['code']}|{built_from['sources'].get('service.telemetry')}|{digits}"
    telemetry = store.get("telemetry", telemetry_key) if telemetry_key else None
    con = lake.duck(thread.build_db, read_only=True, memory_limit=thread.memory_limit)
    try:
        if telemetry is None:
            telemetry = shards.telemetry_summaries(con, digits)
            if telemetry_key:
                store.put("telemetry", telemetry, telemetry_key)
        now_digests = shards.twin_digests(con, thread_digests or {}, rul.estimates(thread.lake_dir), digits,
                                          telemetry=telemetry)
        configuration = shards.family_digests(con, "configuration") if thread_digests is not None else None
    finally:
        con.close()
    key = _change_set_key(store, digits)
    dirty = None if thread_digests is None else shards.changed(store.get("twins", key), now_digests)
    # Of those, the shards whose thread rows are as at the last change set: there only the twins'
    # telemetry aspects can differ, and only those are evaluated.
    rethreaded = None if dirty is None else shards.changed(store.get("twins_thread", key), thread_digests)
    # Of the others, those whose configuration family's rows are as at the last change set (an
    # ECO's shards): there the twins' configuration is the stored one.
    reconfigured = None if dirty is None or configuration is None else \
        shards.changed(store.get("twins_configuration", key), configuration)
    store.forget("twins")
    where = telemetry_where = configuration_kept_where = None
    if dirty is not None:
        full = dirty if rethreaded is None else sorted(set(dirty) & set(rethreaded))
        telemetry_only = sorted(set(dirty) - set(full))
        configuration_kept = [] if reconfigured is None else sorted(set(full) - set(reconfigured))
        full = sorted(set(full) - set(configuration_kept))
        where = shards.sql_where(full, digits=digits)
        telemetry_where = shards.sql_where(telemetry_only, digits=digits) if telemetry_only else None
        configuration_kept_where = shards.sql_where(configuration_kept, digits=digits) if configuration_kept else None
        context.log.info(f"Twin inputs compared in {len(dirty)} shards: {len(telemetry_only)} of them for their "
                         f"telemetry only, {len(configuration_kept)} with their configuration as it was.")
    # Units still waiting from an earlier change set: compared whole where they are looked at now.
    earlier = twins.pending(thread.lake_dir) if dirty is not None else None
    changed = twins.changes(thread.build_db, thread.lake_dir, memory_limit=thread.memory_limit,
                            where=where, telemetry_where=telemetry_where, waiting=earlier,
                            configuration_kept_where=configuration_kept_where)
    now = datetime.now(timezone.utc)
    changed = changed.append_column("detected_at", pa.array([now] * changed.num_rows, pa.timestamp("us", tz="UTC")))
    if dirty is not None:
        # Units still waiting from an earlier change set, in shards not looked at now, stay pending
        # (only those still waiting: a first build's change set names every unit, and carrying
        # it forward had an ECO at 100,000 units report 81,608 twins to refresh for 985).
        if earlier is not None and earlier.num_rows:
            looked_at = set(dirty)
            keep = [shards.shard_of(s, digits) not in looked_at for s in earlier["serial_number"].to_pylist()]
            # (cast: DuckDB names the time zone of what it read back Etc/UTC)
            carried = earlier.filter(pa.array(keep)).select(changed.column_names).cast(changed.schema)
            changed = pa.concat_tables([carried, changed])
    lake.write(twins.pending_table(thread.lake_dir), changed, "overwrite", batch_id=context.run_id)
    store.put("twins", now_digests, key, rebuilt=dirty)
    store.put("twins_thread", thread_digests or {}, key)
    store.put("twins_configuration", configuration or {}, key)
    # Every unit to refresh needs its partition (a new unit, or a lake whose Dagster history is
    # elsewhere: a restored backup, a new instance).
    live = [r["serial_number"] for r in changed.to_pylist() if r["reasons"] != ["no longer a twin (scrapped or removed)"]]
    added = register_units(context, thread, live)
    ledger.record("twin_changes", inputs)
    try:
        requested = _request_twin_runs(context, thread, changed) if changed.num_rows else []
    except Exception as error:  # the change set is written: the twin-refresh sensor requests its runs
        context.log.warning(f"Could not queue the twin runs of this change set ({error!r}); the twin_refresh "
                            "sensor requests them at its next tick.")
        requested = []
    yield dg.MaterializeResult(metadata={
        "units_to_refresh": changed.num_rows,
        "partitions_added": added,
        "by_reason": dg.MetadataValue.json(_count(changed.column("reasons").to_pylist())),
        "examples": dg.MetadataValue.json(changed.slice(0, 20).select(["serial_number", "reasons"]).to_pylist()),
        "twin_runs_requested": dg.MetadataValue.json(requested),
    })


def _request_twin_runs(context: dg.AssetExecutionContext, thread: ThreadSettings, changed: pa.Table) -> list[str]:
    """The twin runs of this change set, queued by this run itself when it was launched by a
    daemon (`thread serve`) and no other run rebuilds the thread after it: the same runs the
    twin-refresh sensor would request once this run had ended, without waiting for the sensor's
    next tick (1.0-1.4 s of a live ECO at 10,000 units: the wait in the daemon's loop, the tick,
    the run's creation). The sensor requests no run for a change set that has its runs. Runs
    executed in process (`thread build`, the benchmark's builds) have no code location to launch
    from and leave the twins to their own stage; a run that refreshes the twins itself too."""
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.storage.tags import CODE_LOCATION_TAG

    run, instance = context.run, context.instance
    if run.remote_job_origin is None or run.job_code_origin is None \
            or not isinstance(instance.run_coordinator, QueuedRunCoordinator) \
            or TWIN_KEY in context.job_def.asset_layer.selected_asset_keys:
        return []
    others = [r.run_id for r in runs.active(instance, TWIN_CHANGES_KEY) if r.run_id != run.run_id]
    if others:
        context.log.info(f"Run {others[0]} rebuilds the thread after this one: its twins are requested after it.")
        return []
    detected = pc.max(changed["detected_at"]).as_py()
    if requested_for(instance, detected):
        return []
    job = context.repository_def.get_implicit_global_asset_job_def()
    location = {k: v for k, v in run.tags.items() if k == CODE_LOCATION_TAG}
    tag_sets, new = twin_run_tags(instance, thread, detected, changed)
    if new:  # normally added with the change set already (`register_units`)
        instance.add_dynamic_partitions(UNITS.name, new)
    requested = []
    for tags in tag_sets:
        queued = instance.create_run_for_job(
            job, asset_selection={TWIN_KEY, WAREHOUSE_KEY}, status=dg.DagsterRunStatus.NOT_STARTED,
            tags={**location, **tags, "thread/trigger": "twin_changes", "thread/requested_by": run.run_id},
            remote_job_origin=run.remote_job_origin, job_code_origin=run.job_code_origin)
        instance.submit_run(queued.run_id, workspace=None)
        requested.append(queued.run_id)
        context.log.info(f"Queued the twin run {queued.run_id} ({tags[RANGE_START]} .. {tags[RANGE_END]}).")
    return requested


# The change set (its detection time) a twin run refreshes: one change set's runs are requested once,
# by the run that computed it or else by the sensor.
CHANGE_SET_TAG = "thread/change_set"


def requested_for(instance: dg.DagsterInstance, detected: datetime) -> dict[str, str]:
    """The runs already requested for the change set detected then: run id by the start of its range."""
    found = instance.get_runs(filters=dg.RunsFilter(tags={CHANGE_SET_TAG: detected.isoformat()}))
    return {run.tags.get(RANGE_START): run.run_id for run in found}


def twin_run_tags(instance: dg.DagsterInstance, thread: ThreadSettings, detected: datetime,
                  pending: pa.Table) -> tuple[list[dict[str, str]], list[str]]:
    """The tags of the runs that refresh the twins of the change set detected then (a partition
    range each), and the partitions to add first."""
    ranges, new = plan(instance, thread, pending=pending)
    return [{RANGE_START: t[RANGE_START], RANGE_END: t[RANGE_END], CHANGE_SET_TAG: detected.isoformat()}
            for t in ranges], new


def _change_set_key(store: shards.Store, digits: int) -> str:
    """With the thread's code: new twin logic changes no digest, and every twin is compared."""
    return f"{digits}|{store.code('thread')}"


def _count(reason_lists) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reasons in reason_lists:
        for r in reasons:
            counts[r] = counts.get(r, 0) + 1
    return counts


# BackfillPolicy is marked beta in Dagster 1.13; a single run per partition range is what a
# refresh of many twins needs. Said once here rather than on every build's terminal.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    _twin_asset = dg.asset(
        key=TWIN_KEY,
        deps=[*LOGIC_KEYS, RUL_KEY, TWIN_CHANGES_KEY],
        group_name="twin",
        kinds={"delta"},
        partitions_def=UNITS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec(name, asset=TWIN_KEY, description=text) for name, text in twins.CHECKS.items()],
        description=(
            "One live twin per unit that is not scrapped (a partition per serial number; past 1,000 units "
            "per shard of 10, 100, ... consecutive serials, HX200-0001xx): its row of "
            "twin.unit_twin, what it holds (twin.unit_components) and its sensors (twin.unit_sensor_state), "
            "kept in lake/_state/twin/units and published by `warehouse`. A run recomputes only the units in its "
            "partition range whose inputs changed; which ones and why is in lake/_state/twin/refresh_log."
        ),
    )


@_twin_asset
def twin_units(context: dg.AssetExecutionContext, thread: ThreadSettings, writer: WriterLock) -> dg.MaterializeResult:
    keys = set(context.partition_keys)
    per_unit = all(twins.key_size(k) == 1 for k in keys)
    full = context.run.tags.get(FULL_REFRESH_TAG) == "true"
    pending = twins.pending(thread.lake_dir)
    reasons = {}
    if pending is not None:
        for row in pending.select(["serial_number", "reasons"]).to_pylist():
            reasons[row["serial_number"]] = row["reasons"]
    # A range can include units whose inputs did not change: recompute only those that did.
    if full and per_unit:
        targets = sorted(keys)
    else:
        candidates = (twins.units(thread.build_db, memory_limit=thread.memory_limit) | set(reasons)) if full \
            else set(reasons)
        targets = twins.in_partitions(candidates, keys)
    configuration_kept = set() if full else _configuration_kept(thread, reasons, targets)
    now = datetime.now(timezone.utc)
    # A full refresh observes every unit (a first build, or a Dagster instance new to this lake).
    observed_before = _observed(thread, targets) if per_unit and not full else {}
    state = {t: lineage.delta(twins.state_dir(thread.lake_dir) / t) for t in twins.TABLES}
    with lineage.step(thread.lineage(), "twin.refresh", lineage.Parent(context.run_id, context.job_name),
                      inputs=[lineage.duckdb(thread.build_db, k.to_user_string().replace("/", ".")) for k in LOGIC_KEYS],
                      outputs=state.values()) as step:
        counts, computed, kept = twins.refresh(thread.build_db, thread.lake_dir, targets, batch_id=context.run_id,
                                               now=now, memory_limit=thread.memory_limit,
                                               configuration_kept=configuration_kept)
        step.rows.update({state[t]: n for t, n in counts.items() if t in state})
    why = {k: reasons.get(k, ["full refresh"]) for k in targets}
    twins.log_refresh(thread.lake_dir, context.run_id, why, now)
    store = shards.Store(thread.build_db)
    store.add_pending_publish("twins", targets)
    store.add_pending_publish(COMPONENTS_PUBLISH, [t for t in targets if t not in kept])
    by_reason = _count(why.values())
    # A partition is a unit or, past 1,000 units, a shard of them: the run's size is in partitions.
    context.log.info(f"Refreshed {len(targets)} twins in a run over {len(keys)} partitions ({len(kept)} of them "
                     f"their configuration as it was, components kept): {by_reason}")
    if per_unit:
        _observe(context, thread, why, observed_before)
    checks = twins.check(thread.build_db, thread.lake_dir, targets, memory_limit=thread.memory_limit,
                         current_inputs=computed, components_kept=kept)
    # Kept small: in a run over many partitions this is stored once per partition.
    return dg.MaterializeResult(
        metadata={
            "refreshed_units": len(targets),
            "partitions_in_run": len(keys),
            "refreshed_by_reason": dg.MetadataValue.json(by_reason),
            "component_rows": counts["unit_components"],
        },
        check_results=[dg.AssetCheckResult(check_name=name, passed=passed, metadata=meta,
                                           severity=dg.AssetCheckSeverity.ERROR)
                       for name, (passed, meta) in checks.items()],
    )


def _configuration_kept(thread: ThreadSettings, reasons: dict[str, list[str]], targets: list[str]) -> set[str]:
    """The targets whose configuration did not change (their reasons are other aspects: readings,
    an ECO's impact), in shards whose thread rows are still as the change set saw them (a thread
    run since may have changed more): refreshed without computing and writing their components
    again (`twins.refresh`)."""
    store, digits = shards.Store(thread.build_db), thread.shard_size_digits
    now = store.get("thread")
    seen = store.get("twins_thread", _change_set_key(store, digits))
    if not now or not seen:
        return set()
    return {t for t in targets if reasons.get(t) and set(reasons[t]) <= set(twins.BESIDE_CONFIGURATION)
            and (shard := shards.shard_of(t, digits)) in now and seen.get(shard) == now[shard]}


# The units whose stored components a twin run rewrote, waiting to be published (the others'
# published components are still right).
COMPONENTS_PUBLISH = "twins:unit_components"


# What a unit's partition page shows about the unit (the run's metadata is only totals): its twin's
# state. RUL hours and the last reading move with every reading; they are served by the twin tables,
# not observed, so that a day of telemetry does not write one more Dagster event per unit.
OBSERVED = ("health_state", "worst_sensor", "rul_model_version", "pending_retrofits", "deviation_count",
            "open_service_events", "configuration_hash", "status", "site")


def _observed(thread: ThreadSettings, serials: list[str]) -> dict[str, dict]:
    """The observed state of these units' twins as stored now."""
    state = lake.read(twins.state_dir(thread.lake_dir) / "unit_twin", columns=["serial_number", *OBSERVED],
                      filter=pc.field("serial_number").isin(serials))
    return {r.pop("serial_number"): r for r in state.to_pylist()} if state is not None else {}


def _observe(context: dg.AssetExecutionContext, thread: ThreadSettings, why: dict[str, list[str]],
             before: dict[str, dict]) -> None:
    """One observation on a unit's partition when its twin's state changed (a new twin, one gone,
    or any observed fact), saying what it is now and why it was refreshed."""
    after = _observed(thread, list(why))
    for serial, reasons in why.items():
        row = after.get(serial)
        if serial in before and row == before[serial]:
            continue
        meta = {"refreshed_because": ", ".join(reasons)}
        if row is None:
            meta["twin"] = "none (scrapped or no longer a unit)"
        else:
            meta.update({k: dg.MetadataValue.text("-" if v is None else str(v)) for k, v in row.items()})
        context.log_event(dg.AssetObservation(asset_key=TWIN_KEY, partition=serial, metadata=meta))


# How long the twin refresh waits for a run that is rebuilding the change set anyway.
CHANGE_SET_WAIT = timedelta(seconds=60)


@dg.sensor(
    name="twin_refresh",
    asset_selection=dg.AssetSelection.assets(TWIN_KEY, WAREHOUSE_KEY),
    minimum_interval_seconds=runs.SENSOR_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests twin runs for the units in the current change set (lake/_state/twin/pending) "
    "that have not been refreshed yet, as few partition ranges as possible, unless the run that computed "
    "the change set queued them (tag thread/change_set); while a run that rebuilds the thread is queued or "
    "in progress, waits for its change set (at most 60 s).",
)
def twin_refresh_sensor(context: dg.SensorEvaluationContext, thread: ThreadSettings):
    # The runs in progress first, then the change set: a thread run that ended between the two
    # looks wrote its change set before it ended. The other way round, a change set read just
    # before it was written looked empty, the run then looked finished, and a publish was requested
    # ahead of the twins (which then waited for its writer lock: 2.7 s at 10,000 units).
    busy = runs.active(context.instance, TWIN_CHANGES_KEY, WAREHOUSE_KEY)
    pending = twins.pending(thread.lake_dir)
    if pending is None or pending.num_rows == 0:
        # No twin to refresh, but the thread (or a source's staleness) may have changed: publish it.
        ledger = Ledger(thread.build_db)
        if ledger.get("thread") is None:
            return dg.SkipReason("every twin is up to date; the thread is being rebuilt")
        inputs, current = publish.current(thread, ledger.get("thread"))
        if current:
            return dg.SkipReason("every twin is up to date and published")
        # A run rebuilding the thread decides with its change set; a run publishing does it anyway.
        if busy:
            return dg.SkipReason(f"run {busy[0].run_id} rebuilds the thread or publishes: not published twice")
        return dg.RunRequest(run_key=f"publish:{inputs[:16]}", asset_selection=[WAREHOUSE_KEY],
                             tags={"thread/trigger": "twin_refresh"})
    detected = pc.max(pending["detected_at"]).as_py()
    coming = next((r.run_id for r in runs.materializing(busy, TWIN_CHANGES_KEY)), None)
    if coming is not None and datetime.now(timezone.utc) - detected < CHANGE_SET_WAIT:
        # Sources landing one system at a time (a day of activity) each rebuild the thread and the
        # change set: twins refreshed in between would be refreshed again, a launch and a publish
        # each. Waited for at most CHANGE_SET_WAIT, so a steady stream of changes cannot starve them.
        return dg.SkipReason(f"run {coming} rebuilds the thread and the change set: its twins are requested "
                             f"after it (or {CHANGE_SET_WAIT.seconds} s after this change set, if it runs longer)")
    requested = requested_for(context.instance, detected)
    tag_sets, new = twin_run_tags(context.instance, thread, detected, pending)
    tag_sets = [tags for tags in tag_sets if tags[RANGE_START] not in requested]
    if requested and not tag_sets:
        return dg.SkipReason(f"run {next(iter(requested.values()))} refreshes the twins of this change set")
    return dg.SensorResult(
        run_requests=[
            # Publishing in the same run saves a launch: the refreshed twins reach analysts at once.
            dg.RunRequest(run_key=f"twins:{tags[CHANGE_SET_TAG]}:{tags[RANGE_START]}:{tags[RANGE_END]}",
                          asset_selection=[TWIN_KEY, WAREHOUSE_KEY], tags={**tags, "thread/trigger": "twin_refresh"})
            for tags in tag_sets
        ],
        dynamic_partitions_requests=[UNITS.build_add_request(new)] if new else [],
    )
