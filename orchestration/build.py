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

import contracts

from .settings import ThreadSettings

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


STAGES = (*contracts.SYSTEMS, "thread", "twins", "publish")


def stages() -> list[tuple[str, dg.AssetSelection]]:
    """What `thread build` runs, in order: each system's extraction on its own (a failed export
    leaves the others proceeding), the thread (dbt, RUL, twin change set), the twins, the publish."""
    from .defs.keys import TWIN_KEY, WAREHOUSE_KEY

    sources = dg.AssetSelection.groups(*contracts.SYSTEMS)
    twins, publish = dg.AssetSelection.assets(TWIN_KEY), dg.AssetSelection.assets(WAREHOUSE_KEY)
    return [*((system, dg.AssetSelection.groups(system)) for system in contracts.SYSTEMS),
            ("thread", dg.AssetSelection.all() - sources - twins - publish), ("twins", twins), ("publish", publish)]


def run_build(defs: dg.Definitions, instance: dg.DagsterInstance, settings: ThreadSettings,
              progress: Callable[[str, list[StepOutcome]], None] | None = None,
              log_path: Path | None = None, *, full: bool = False) -> BuildResult:
    """Sources, then the thread, then the twins whose inputs changed (all with `full`), then publish."""
    import os

    from .defs import twins as twin_defs

    assets = list(defs.assets)
    resources = defs.resources
    build = BuildResult()
    _close_abandoned_runs(instance)
    for name, selection in stages():
        runs = [{}]
        if name == "twins":
            runs, new = twin_defs.plan(instance, settings, full)
            if new:
                instance.add_dynamic_partitions(twin_defs.UNITS.name, new)
        for run_tags in runs:
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
