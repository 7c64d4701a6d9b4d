"""`thread build`: the whole graph in-process, with the same definitions the UI loads.

Extraction runs first, every entity of every system a step of one run: a failed export fails its
own step, leaves that entity's raw table as it was, and the others proceed. The thread (audit,
dbt, publish) then runs on whatever each system last landed successfully.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb

from .settings import ThreadSettings

# The CLI prints its own progress and one line per failure; Dagster's console log (a stack trace per
# failed step) would drown it. The UI keeps every event; the build's log file gets the traces.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class StepOutcome:
    key: str
    ok: bool
    detail: str


@dataclass
class BuildResult:
    steps: list[StepOutcome] = field(default_factory=list)
    # Stages not launched: every step of theirs would have found its inputs as it last completed.
    unchanged: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[StepOutcome]:
        return [s for s in self.steps if not s.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def _traces(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's full error, for the log file."""
    return "\n".join(f"--- {e.step_key}\n{e.step_failure_data.error.to_string()}" for e in result.all_events
                     if e.event_type_value == "STEP_FAILURE")


def _outcomes(result: dg.ExecuteInProcessResult, data_dir: Path) -> list[StepOutcome]:
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
                detail = "unchanged" if not meta.get("input_rows") else detail + " (unchanged)"
        elif "rows thread.units" in meta:
            detail = f"published {meta['path']}"
        elif "refreshed_units" in meta:
            n, runs = meta["refreshed_units"], meta["partitions_in_run"]
            detail = f"{n} {'twin' if n == 1 else 'twins'} refreshed (a run over {runs} partitions)"
        elif "units_to_refresh" in meta:
            detail = f"{meta['units_to_refresh']} twins to refresh"
        elif meta.get("rebuilt") is False:
            detail = "view, not created again" if meta.get("view") else "unchanged (not rebuilt)"
        else:
            detail = "ok"
        out.append(StepOutcome(mat.asset_key.to_user_string(), True, detail))
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            message = (error.message or "").strip().splitlines()
            user = event.step_failure_data.user_failure_data
            text = (user.description if user and user.description else (message[0] if message else "failed"))
            out.append(StepOutcome(event.step_key.replace("__", "/"), False, explain(text, data_dir)))
    return out


@contextlib.contextmanager
def _captured(log_path: Path | None):
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


DISK_FULL = ("no space left on device", "database or disk is full", "disk i/o error", "errno 28")


def explain(text: str, data_dir: Path) -> str:
    """A low-level failure in the words of what happened: a full disk says so, whoever noticed it
    (Dagster's run storage reports "disk I/O error", DuckDB and Delta "No space left on device")."""
    lowered = text.lower()
    if any(m in lowered for m in DISK_FULL):
        import shutil

        free = shutil.disk_usage(data_dir if Path(data_dir).exists() else Path(data_dir).parent).free
        if free < 64 * 2**20 or "no space" in lowered or "errno 28" in lowered:
            return (f"No space left on device: the file system of {data_dir} has {free / 2**20:.1f} MiB free. "
                    "Free space and run again; the last good warehouse is still served.")
    return text


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


def run_build(defs: dg.Definitions, instance: dg.DagsterInstance, settings: ThreadSettings,
              progress: Callable[[str, list[StepOutcome]], None] | None = None,
              log_path: Path | None = None, *, full: bool = False) -> BuildResult:
    """Sources, then the thread, then the twins whose inputs changed (all with `full`), then publish."""
    import os

    from .defs import twins as twin_defs
    from .defs.jobs import STAGES, job_name

    build = BuildResult()
    _close_abandoned_runs(instance)
    for name in STAGES:
        job = defs.resolve_job_def(job_name(name))
        runs, selection = [{}], None
        if name == "twins":
            runs, new = twin_defs.plan(instance, settings, full)
            if new:
                instance.add_dynamic_partitions(twin_defs.UNITS.name, new)
        elif name in ("thread", "publish"):
            selection = _due(name, settings)
            if selection == []:
                build.unchanged.append(name)
                if progress:
                    progress(name, [])
                continue
        for run_tags in runs:
            # dagster-dbt echoes every dbt log line to stdout; keep it in a file, not on the terminal.
            with _captured(log_path):
                result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET,
                                                tags={PID_TAG: str(os.getpid()), **run_tags},
                                                asset_selection=selection)
            outcomes = _outcomes(result, settings.data_root)
            if log_path is not None and not result.success:
                with log_path.open("a", encoding="utf-8") as f:
                    f.write(_traces(result) + "\n")
            if not result.success and not any(not o.ok for o in outcomes):
                outcomes.append(StepOutcome(name, False, "run failed"))
            build.steps += outcomes
            if progress:
                progress(name, outcomes)
    return build


def _due(stage: str, settings: ThreadSettings) -> list[dg.AssetKey] | None:
    """The steps of the thread or publish stage to run: None for all of them, [] for none.

    Each step compares its inputs with those it last completed with and does nothing when they
    are equal; asking the same question first spares a run that would only record doing nothing
    (on unchanged sources at 10,000 units, 1.6 s: a run start and the planned events of its
    ~100 dbt models and tests). After a complete thread build whose estimates or change set
    failed, those two run alone."""
    from .defs import health, thread
    from .defs import twins as twin_defs
    from .defs.keys import RUL_KEY, TWIN_CHANGES_KEY
    from .fingerprints import Ledger
    from .publish import current

    ledger = Ledger(settings.build_db)
    if stage == "publish":
        return [] if current(settings, ledger.generation("build"))[1] else None
    if not thread.thread_is_current(settings):
        return None
    if ledger.unchanged("rul", health.rul_inputs(settings, "build")) \
            and ledger.unchanged("twin_changes", twin_defs.change_set_inputs(settings, "build")):
        return []
    return [RUL_KEY, TWIN_CHANGES_KEY]


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
