"""The conformed thread: dbt models as Dagster assets, lineage from each raw asset to each mart.

Keys and groups are dagster-dbt's defaults: a model's key is its schema and name (`thread/units`),
its group the `dagster.group` its folder declares in dbt_project.yml, so the graph reads left to
right: systems (plm, mes, erp, service) -> staging -> intermediate -> thread -> twin -> publish.
"""

import json
import time
from contextlib import nullcontext
from functools import cached_property
from importlib.metadata import version

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets
from packaging.version import Version

import contracts

from .. import dbt_project, fingerprints, lake, lineage, shards, spark
from ..dbt_project import (
    DBT_EXECUTABLE,
    PROJECT,
    BuildDatabaseLocked,
    prepare_build_db,
    write_lake_catalog,
)
from ..faults import checkpoint
from ..fingerprints import Ledger
from ..resources import WriterLock
from ..settings import ThreadSettings
from . import dbt_in_process, runs
from .keys import (
    AUDIT_WRITTEN_BY_DBT_STEP,
    AUDIT_WRITTEN_BY_EXTRACTION,
    LOGIC_KEYS,
    RAW_KEYS,
    RUL_INPUT_KEYS,
    RUL_KEY,
    TWIN_CHANGES_KEY,
)


class ThreadDbtCli(DbtCliResource):
    """dagster-dbt's resource without two costs paid before every dbt invocation (about 6 s of a
    small build's 13 s dbt step, and the same again on each incremental run): `dbt --version` in a
    subprocess, to learn the version of the dbt-core installed beside us; and an in-process dbt
    adapter, used only to fetch row counts and column metadata, which this project never asks for.
    Both are private hooks of the exactly pinned dagster-dbt (0.29.27): recheck on upgrade."""

    @cached_property
    def _cli_version(self) -> Version:
        return Version(version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):
        return None


def dbt_resource() -> DbtCliResource:
    return ThreadDbtCli(project_dir=PROJECT, dbt_executable=DBT_EXECUTABLE)


# What the steps after dbt read: the estimates' inputs and the twin views. An incremental run
# reports those its changed sources did not reach as outputs it left as they were (not rebuilt), so
# the steps after it are not skipped for want of an upstream output. Rebuilding them each time, as
# before, cost an ECO's dbt at 10,000 units about 1.5 s of dbt's threads (the units table, three
# views and their five tests).
READ_AFTER_DBT = [*RUL_INPUT_KEYS, *LOGIC_KEYS]


def thread_inputs(thread: ThreadSettings) -> tuple[dict[str, object], str, str]:
    """What the dbt step is computed from: the sources' versions, the code's digest (the engine is
    part of the code: a switch rebuilds everything on the new engine), and their digest together,
    which the step compares with the one it last completed with."""
    sources = fingerprints.source_versions(thread.lake_dir)
    code = fingerprints.thread_code(PROJECT.manifest_path, thread.salt(),
                                    layout={"shard_digits": thread.shard_size_digits, "engine": thread.engine})
    return sources, code, fingerprints.digest([sources, code])


def thread_is_current(thread: ThreadSettings) -> bool:
    """Would the dbt step do nothing now (its inputs as at its last complete build)?"""
    return thread.build_db.exists() and thread.lake_catalog.exists() \
        and Ledger(thread.build_db).unchanged("thread", thread_inputs(thread)[2])


@dbt_assets(manifest=PROJECT.manifest_path, project=PROJECT, name="thread_dbt")
def thread_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, thread: ThreadSettings, writer: WriterLock):
    # dbt reads schema `raw` of the build database; point it at the current raw Delta versions.
    if thread.salt_is_generated:
        context.log.warning(f"THREAD_PII_SALT is not set: customers are masked with a generated secret salt kept in "
                            f"{thread.generated_salt_file} (owner-only). Set THREAD_PII_SALT in production.")
    ledger = Ledger(thread.build_db)
    sources, code_now, inputs = thread_inputs(thread)
    if ledger.unchanged("thread", inputs):
        context.log.info("Every input of the thread is as it was at the last dbt build: nothing to do.")
        if not thread.lake_catalog.exists():
            write_lake_catalog(thread.lake_catalog, thread.lake_dir, cache=thread.lake_cache)
        return
    later = _rebuilt_later(context) if context.run.tags.get(WITH_THREAD_TAG) == "true" else None
    if later is not None:
        # Several systems landing one after another (a day of activity): the last of their runs
        # builds the thread once, with everything they landed. The tag tells thread_refresh.
        context.instance.add_run_tags(context.run_id, {DEFERRED_TAG: later})
        context.log.info(f"Run {later} lands more sources and rebuilds the thread after this one: not built twice.")
        return
    new_database = not thread.build_db.exists()
    on_spark = thread.engine == "spark"
    phases, since = {}, time.monotonic()

    def phase(name: str) -> None:  # where the step's time went, logged at its end (and read by the bench)
        nonlocal since
        now = time.monotonic()
        phases[name] = round(phases.get(name, 0.0) + now - since, 2)
        since = now

    parent = lineage.Parent(context.run_id, context.job_name)
    raw = {c.raw_relation: lineage.delta(lake.raw_table(thread.lake_dir, c.system, c.entity))
           for c in contracts.ENTITIES.values()}
    try:
        with lineage.step(thread.lineage(), "thread.raw_views", parent, inputs=raw.values(),
                          outputs=[lineage.duckdb(db, f"raw.{r}") for db in (thread.build_db, thread.lake_catalog)
                                   for r in raw]):
            views = prepare_build_db(thread.build_db, thread.lake_dir, thread.salt(), thread.lake_cache)
            write_lake_catalog(thread.lake_catalog, thread.lake_dir, views)
            if on_spark:
                spark.link_raw(thread)
        phase("raw views")
    except BuildDatabaseLocked as e:
        raise dg.Failure(str(e), allow_retries=False) from None
    if new_database:  # the state files beside it describe a build database that is gone
        ledger.reset()
        shards.Store(thread.build_db).reset()
    ledger.forget("thread")  # from here on the build database no longer matches any fingerprint
    for key in AUDIT_WRITTEN_BY_DBT_STEP:
        context.log_event(dg.AssetMaterialization(asset_key=key, metadata={"build_db": str(thread.build_db)}))
    whole = context.selected_asset_keys >= set(thread_dbt.keys)
    runs = 0

    def build(*selection: str, dbt_vars: dict, own_selection: bool = False, exclude: tuple[str, ...] = ()):
        nonlocal runs
        args = ["build", *selection, "--vars", json.dumps(dbt_vars), "--threads", str(thread.threads),
                *thread.dbt_log_args,
                # dbt unit tests check the SQL rules on fixed inputs: they run in the test suite,
                # not on every refresh of the data.
                "--exclude", " ".join(["test_type:unit", *exclude])]
        # dbt-spark's session makes dbt's process the Spark driver: that stays a process of its own.
        with nullcontext() if on_spark else dbt_in_process.in_process():
            if own_selection:
                # dagster-dbt would add the run's selection after ours (and dbt takes the last
                # --select): run dbt on our selection and report its models as this step's outputs.
                invocation = dbt.cli(args, manifest=PROJECT.manifest_path, target_path=thread.dbt_target_dir)
                events = (_as_output(context, e) for e in invocation.stream())
            else:
                events = dbt.cli(args, context=context, target_path=thread.dbt_target_dir).stream()
        results = thread.dbt_target_dir / "run_results.json"
        before = results.stat().st_mtime_ns if results.exists() else None
        try:
            for event in events:
                runs += 1
                if runs == 2:
                    checkpoint("dbt-run")
                yield event
        finally:  # a failed dbt run reports its failed models too; a run that wrote no results, nothing
            if results.exists() and results.stat().st_mtime_ns != before:
                lineage.dbt_models(thread.lineage(), results, dbt_project.manifest(), thread.build_db, parent)
            if on_spark:  # the steps after dbt read Spark's tables through the build database
                spark.bridge(thread, dbt_project.models(spark.BRIDGED_SCHEMAS))

    # The memory limit is validated here (dbt_vars), before dbt-duckdb pastes it into SET.
    if not whole:  # a hand-picked subset (the UI): those models, every shard
        yield from build(dbt_vars=thread.dbt_vars())
        return
    store = shards.Store(thread.build_db)
    code = f"{fingerprints.code_version(PROJECT.manifest_path)}|{thread.shard_size_digits}|{thread.engine}"
    before = store.get("thread", code)
    store.forget("thread")
    shards_untouched = False
    if before is None or on_spark:
        # Nothing to compare with (a new build database, new code): every model, every shard; the
        # digests are for the next build. Spark's Parquet tables cannot delete a shard (only Delta
        # tables can): there, every build is whole, and the twins compare every unit.
        yield from build("--full-refresh", dbt_vars=thread.dbt_vars())
        changed = None
    else:
        # One dbt invocation: what is not per unit downstream of the sources that changed since the
        # last complete build (the rest is as that build left it), the shard digests, and the
        # per-unit models for just the shards whose digest differs from the last build's (those
        # `before` holds, kept in the build database by that build for `int_shards_changed`).
        reached = fingerprints.changed_sources(ledger.get("thread_sources"), code_now, sources)
        if reached is None:  # cannot tell what changed: every model, the per-unit ones by shard
            yield from build(dbt_vars=thread.dbt_vars())
        else:
            if reached:
                context.log.info(f"Sources changed since the last build: {', '.join(reached)}")
            # The shard digests and the per-unit models, only where a source they read changed: a
            # day of telemetry leaves every shard as it was (digesting them again cost 6 s at M).
            shards_reached = bool(set(reached) & dbt_project.upstream_sources(shards.DIGESTS_MODEL))
            # The ECO digests with them: else an ECO list left from an earlier run would have
            # eco_impact recompute those ECOs again.
            digests = [shards.DIGESTS_MODEL, shards.ECO_DIGESTS_MODEL] if shards_reached else []
            selected = [*(f"source:{s}+" for s in reached), *(f"{m}+" for m in digests)]
            # Views are not created again (at 10,000 units an ECO's seven: 0.4 s of its dbt run).
            views = dbt_project.views_left_in_place(set(reached), set(digests))
            left = _left_as_they_were(context, set(reached), set(digests), views)

            def in_two_invocations():
                """The digests and what they read first; then the rest, without the per-unit models
                whose family rebuilds no shard and what reads only those (they would build nothing:
                an ECO's ten at 10,000 units, each about 0.2 s of dbt's Python)."""
                first = dbt_project.read_by(set(reached), set(digests), set(shards.CHANGED_MODELS))
                # (cautious: not the tests that also read a model built after, the per-unit ones)
                yield from build("--select", " ".join(sorted(first)), "--indirect-selection", "cautious",
                                 dbt_vars=thread.dbt_vars(), own_selection=True, exclude=tuple(sorted(views)))
                rebuilt, ecos = shards.to_rebuild(thread.build_db, dbt_project.shard_families())
                unchanged = dbt_project.unchanged_by(set(reached), set(digests), first,
                                                     {a for a, found in rebuilt.items() if found}, bool(ecos))
                keys = _keys_by_model(context)
                left.update({keys[name]: NOTHING_TO_BUILD for name in unchanged if keys[name] not in left})
                rest = dbt_project.selected_by(set(reached), set(digests)) - first - unchanged - views
                if rest:
                    yield from build("--select", " ".join(sorted(rest)), dbt_vars=thread.dbt_vars(),
                                     own_selection=True, exclude=tuple(sorted(views)))

            if digests:
                events = in_two_invocations()
            else:
                events = build("--select", " ".join(selected), dbt_vars=thread.dbt_vars(), own_selection=True,
                               exclude=tuple(sorted(views))) if selected else iter(())
            yield from _reported_in_order(context, left, events)
            shards_untouched = not shards_reached
    phase("dbt")
    aspects = dbt_project.shard_families()
    by_aspect: dict[str, list[str] | None] = dict.fromkeys(aspects)
    ecos: list[str] | None = None  # the ECOs recomputed for every unit (None: all of them)
    if shards_untouched:  # no digest was computed, no shard rebuilt: every shard is as it was
        changed, by_aspect, ecos = [], {a: [] for a in aspects}, []
        store.put("thread", before, code, rebuilt=[])
    elif not on_spark:
        digests, rebuilt, recomputed = shards.keep_built(thread.build_db, aspects)
        changed = shards.changed(before, digests)
        if changed is not None:
            by_aspect, ecos = rebuilt, recomputed
            context.log.info(f"Rebuilt {len(changed)} of {len(digests)} unit shards: {', '.join(changed[:20])}"
                             + "".join(f"; {a}: {len(s)}" for a, s in sorted(rebuilt.items()))
                             + f"; ECOs recomputed: {len(recomputed)}")
        store.put("thread", digests, code, rebuilt=changed)
    store.add_pending_publish("shards", changed)
    store.add_pending_publish("ecos", ecos)
    for aspect, rebuilt_shards in by_aspect.items():
        store.add_pending_publish(f"shards:{aspect}", rebuilt_shards)
    if context.selected_asset_keys >= set(thread_dbt.keys):
        ledger.record("thread", inputs)
        ledger.record("thread_sources", {"code": code_now, "sources": sources})
    phase("bookkeeping")
    context.log.info(PHASES_LOG + json.dumps(phases))


PHASES_LOG = "Thread step phases (s): "
# On a source run that left the thread to a later one: that run's id.
DEFERRED_TAG = "thread/thread_deferred_to"


def _rebuilt_later(context: dg.AssetExecutionContext) -> str | None:
    """Another source run, queued or in progress, whose thread step has not started: it starts
    after this run (it waits for the writer lock this one holds), so it builds with what this
    run landed."""
    for run in runs.active(context.instance, TWIN_CHANGES_KEY):
        if run.run_id != context.run_id and run.tags.get(WITH_THREAD_TAG) == "true" \
                and not runs.step_started(context.instance, run.run_id, thread_dbt.node_def.name):
            return run.run_id
    return None


LEFT = {"rebuilt": False, "why": "no source it reads changed since it was last built"}
VIEW_LEFT = {"rebuilt": False, "view": True,
             "why": "a view, as the last build created it: it reads its inputs as they are now"}
NOTHING_TO_BUILD = {"rebuilt": False, "why": "no shard of its family and nothing it reads changed in this build"}


def _left_as_they_were(context: dg.AssetExecutionContext, sources: set[str], models: set[str],
                       views: set[str]) -> dict[dg.AssetKey, dict]:
    """What an incremental run selecting `source:<s>+` and `<model>+` reports without dbt building
    it: the models the steps after dbt read that no changed source reaches (they are as the build
    that made them left them), and the views it does not create again."""
    left = {key: VIEW_LEFT for name, key in _keys_by_model(context).items() if name in views}
    for key in READ_AFTER_DBT:
        name = key.path[-1]
        if not (dbt_project.upstream_sources(name) & sources or ({name} | dbt_project.upstream_models(name)) & models):
            left[key] = LEFT
    return left


def _keys_by_model(context: dg.AssetExecutionContext) -> dict[str, dg.AssetKey]:
    return {key.path[-1]: key for key in context.assets_def.keys}


def _reported_in_order(context: dg.AssetExecutionContext, left: dict[dg.AssetKey, dict], events):
    """dbt's events, and each model it left as it was reported just before the first output that
    reads it, or after the last: Dagster takes a step's outputs in the order of the graph. `left`
    may grow while the events come (what a first invocation found the second need not build)."""
    done: set[dg.AssetKey] = set()

    def due(keys):  # in the graph's order: a model reads more models than any model it reads
        for key in sorted(keys - done, key=lambda k: len(dbt_project.upstream_models(k.path[-1]))):
            done.add(key)
            yield from _reported(context, key, left[key])

    for event in events:
        if isinstance(event, dg.Output) and set(left) - done:
            reads = dbt_project.upstream_models(context.assets_def.keys_by_output_name[event.output_name].path[-1])
            yield from due({key for key in left if key.path[-1] in reads})
        yield event
    yield from due(set(left))


def _reported(context: dg.AssetExecutionContext, key: dg.AssetKey, why: dict):
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_key(key), metadata=why)
    # Its tests are not run again either. They passed on these rows: a failing one fails the build,
    # and a failed build leaves the next one to rebuild what it would have. (A view left in place
    # has no test: one that has is created again, and its tests run.)
    for check in sorted(k for k in context.selected_asset_check_keys if k.asset_key == key):
        yield dg.AssetCheckResult(asset_key=key, check_name=check.name, passed=True, metadata=why,
                                  description="Not run again: the model was not rebuilt, and this test "
                                  "passed on its rows when it was.")


def _as_output(context: dg.AssetExecutionContext, event):
    """A dbt event of an invocation run without the step's context, as the step's own output: a
    model's materialization as its output, a test's evaluation as the result of its asset check
    (else Dagster counts a blocking check as never run and lets the steps after it proceed
    ungated)."""
    if isinstance(event, dg.AssetMaterialization):
        return dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_key(event.asset_key),
                         metadata=event.metadata)
    if isinstance(event, dg.AssetCheckEvaluation) and event.asset_check_key in context.selected_asset_check_keys:
        return dg.AssetCheckResult(asset_key=event.asset_key, check_name=event.check_name, passed=event.passed,
                                   metadata=event.metadata, severity=event.severity, description=event.description)
    return event


def published_keys() -> list[dg.AssetKey]:
    return sorted((k for k in thread_dbt.keys if k.path[0] == "thread"), key=lambda k: k.path)



# The thread, the remaining-useful-life estimates and the twin change set: one run after sources
# land, so the change set is always computed from one whole build of the thread (never from a new
# configuration beside a stale ECO impact, which a model-by-model cascade could produce).
THREAD_STEPS = dg.AssetSelection.assets(thread_dbt, RUL_KEY, TWIN_CHANGES_KEY)
THREAD_STEP_KEYS = [*thread_dbt.keys, RUL_KEY, TWIN_CHANGES_KEY]
# Runs that rebuild the thread right after their extractions (the source sensors' runs).
WITH_THREAD_TAG = "thread/with_thread"


@dg.sensor(
    name="thread_refresh",
    asset_selection=THREAD_STEPS,
    minimum_interval_seconds=runs.SENSOR_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a source lands in a run that did not rebuild the thread itself (the source sensors' runs "
    "do, or leave it to the next source run waiting behind them), rebuilds the thread, the estimates and the twin "
    "change set in one run (each step does nothing when its inputs are unchanged).",
)
def thread_refresh_sensor(context: dg.SensorEvaluationContext):
    # One query for every key (one per key cost 0.3 s a tick on the code server).
    latest = context.instance.get_latest_materialization_events([*RAW_KEYS, *AUDIT_WRITTEN_BY_EXTRACTION])
    landed = [e for e in latest.values() if e is not None]
    if not landed:
        return dg.SkipReason("nothing has landed yet")
    newest = max(landed, key=lambda e: e.timestamp)
    if newest.timestamp <= float(context.cursor or 0):
        return dg.SkipReason("no source landed since the last thread run")
    run = context.instance.get_run_by_id(newest.run_id)
    if run is not None and run.tags.get(WITH_THREAD_TAG) == "true":
        if not run.is_finished:
            return dg.SkipReason("the run that landed it rebuilds the thread itself")
        later = context.instance.get_run_by_id(run.tags[DEFERRED_TAG]) if DEFERRED_TAG in run.tags else None
        if later is not None and not later.is_finished:
            return dg.SkipReason(f"run {later.run_id} rebuilds the thread with what landed")
        # A run that left the thread to a later one that failed before building it: rebuilt here.
        if run.is_success and (DEFERRED_TAG not in run.tags or (later is not None and later.is_success)):
            context.update_cursor(repr(newest.timestamp))
            return dg.SkipReason("the run that landed it rebuilt the thread")
    context.update_cursor(repr(newest.timestamp))
    return dg.RunRequest(run_key=f"thread:{newest.timestamp}", asset_selection=THREAD_STEP_KEYS,
                         tags={"thread/trigger": "thread_refresh"})
