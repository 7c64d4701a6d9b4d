"""`thread build`: the whole graph in-process, with the same definitions the UI loads.

Extraction runs per system first, each system on its own: a failed export leaves that system's
raw tables as they were and the others proceed. The thread (audit, dbt, publish) then runs on
whatever each system last landed successfully.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb

from . import twins

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
SYSTEM_ORDER = ("plm", "mes", "erp", "service")
# The CLI prints its own progress; Dagster's per-event console log would drown it (the UI keeps it).
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class StepOutcome:
    key: str
    ok: bool
    detail: str


@dataclass
class BuildResult:
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[StepOutcome]:
        return [s for s in self.steps if not s.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def _outcomes(result: dg.ExecuteInProcessResult) -> list[StepOutcome]:
    out = []
    seen = set()
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        # A run over many twin partitions reports each one; one line per asset is enough here.
        if mat.asset_key in seen:
            continue
        seen.add(mat.asset_key)
        meta = {k: v.value for k, v in mat.metadata.items()}
        if "accepted_rows" in meta:
            detail = f"{meta['accepted_rows']} rows"
            if meta.get("quarantined_rows"):
                detail += f", {meta['quarantined_rows']} quarantined"
            if not meta.get("changed", True):
                detail += " (unchanged)"
        elif "rows thread.units" in meta:
            detail = f"published {meta['path']}"
        elif "refreshed_units" in meta:
            detail = f"{meta['refreshed_units']} of {meta['units_in_run']} twins refreshed"
        elif "units_to_refresh" in meta:
            detail = f"{meta['units_to_refresh']} twins to refresh"
        else:
            detail = "ok"
        out.append(StepOutcome(mat.asset_key.to_user_string(), True, detail))
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            message = (error.message or "").strip().splitlines()
            user = event.step_failure_data.user_failure_data
            text = (user.description if user and user.description else (message[0] if message else "failed"))
            out.append(StepOutcome(event.step_key.replace("__", "/"), False, text))
    return out


@contextlib.contextmanager
def _captured(log_path: Path | None):
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        yield


def twin_runs(instance: dg.DagsterInstance, lake_dir: Path, full: bool,
              units_per_partition: int | None = None) -> list[dict[str, str]]:
    """Run tags for the twin refresh: one range of partitions per run (all of them when full)."""
    import os

    size = units_per_partition or int(os.environ.get("THREAD_TWIN_UNITS_PER_PARTITION") or 1)
    from .defs.twins import FULL_REFRESH_TAG, UNITS

    keys = list(instance.get_dynamic_partitions(UNITS.name))
    if not keys:
        return []
    if full:
        ranges = [(keys[0], keys[-1])]
    else:
        pend = twins.pending(lake_dir)
        wanted = {twins.partition_key(s, size) for s in pend["serial_number"].to_pylist()} if pend is not None else set()
        ranges = twins.partition_ranges(keys, wanted)
    return [{RANGE_START: a, RANGE_END: b, FULL_REFRESH_TAG: "true" if full else "false"} for a, b in ranges]


PID_TAG = "thread/pid"


def _close_abandoned_runs(instance: dg.DagsterInstance) -> None:
    """Runs of an earlier `thread build` whose process is gone (killed, machine lost) would stay
    "started" in the UI forever; mark them failed so the history tells the truth."""
    import os

    import psutil

    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    for run in runs:
        pid = run.tags.get(PID_TAG)
        if pid and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            instance.report_run_failed(run, "The process running this build was killed; the next build redoes its work.")


def run_build(defs: dg.Definitions, instance: dg.DagsterInstance,
              progress: Callable[[str, list[StepOutcome]], None] | None = None,
              log_path: Path | None = None, *, lake_dir: Path, full: bool = False) -> BuildResult:
    """Sources, then the thread, then the twins whose inputs changed (all with `full`), then publish."""
    import os

    from .defs.keys import TWIN_KEYS

    assets = list(defs.assets)
    resources = defs.resources
    build = BuildResult()
    _close_abandoned_runs(instance)
    twin_selection = dg.AssetSelection.assets(*TWIN_KEYS)
    stages = [(system, dg.AssetSelection.groups(system), {}) for system in SYSTEM_ORDER]
    stages.append(("thread", dg.AssetSelection.groups("audit", "staging", "intermediate", "thread", "health", "twin")
                   - twin_selection, {}))
    stages.append(("twins", twin_selection, None))
    stages.append(("publish", dg.AssetSelection.groups("publish"), {}))
    for name, selection, tags in stages:
        for run_tags in ([tags] if tags is not None else twin_runs(instance, lake_dir, full)):
            # dagster-dbt echoes every dbt log line to stdout; keep it in a file, not on the terminal.
            with _captured(log_path):
                result = dg.materialize(assets, resources=resources, instance=instance, selection=selection,
                                        raise_on_error=False, tags={"thread/stage": name, PID_TAG: str(os.getpid()), **run_tags},
                                        run_config=QUIET)
            outcomes = _outcomes(result)
            if not result.success and not any(not o.ok for o in outcomes):
                outcomes.append(StepOutcome(name, False, "run failed"))
            build.steps += outcomes
            if progress:
                progress(name, outcomes)
    return build


def summary(warehouse) -> dict:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "units": one("select count(*) from thread.units"),
            "twins": one("select count(*) from twin.unit_twin"),
            "deviations": one("select count(*) from thread.unit_deviations"),
            "units_with_deviations": one("select count(distinct serial_number) from thread.unit_deviations"),
            "released_ecos": one("select count(*) from thread.eco_propagation"),
            "ecos_with_gaps": one("select count(*) from thread.eco_propagation where status = 'gap'"),
            "violations_error": one("select count(*) from thread.contract_violations where severity = 'error'"),
            "violations_warning": one("select count(*) from thread.contract_violations where severity = 'warning'"),
            "pending_retrofits": one("select coalesce(sum(pending_retrofits), 0) from twin.unit_twin"),
            "health": dict(con.execute(
                "select health_state, count(*) from twin.unit_twin group by 1 order by 1").fetchall()),
        }
    finally:
        con.close()
