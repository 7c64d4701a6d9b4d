"""dbt run inside the step's own process, through dbt's programmatic entry point (`dbtRunner`).

A dbt subprocess pays for a Python start and dbt's imports (about 2 s) before it reads the first
file; the run process has most of dbt imported already (dagster-dbt imports it: the rest costs
0.36 s), so an ECO's refresh at 10,000 units takes about 1.5 s less. Everything else stays
dagster-dbt's: its arguments, environment, selection and the translation of dbt's structured
events into Dagster events. dbt's events reach it as the JSON lines dbt would have printed,
through a pipe, while dbt runs in a thread (so models are reported as they finish, as before).

`dagster_dbt.core.dbt_cli_invocation` starts dbt with `subprocess.Popen`; `in_process()` gives it,
for one `dbt.cli(...)` call, a Popen whose process is that thread. A private seam of the exactly
pinned dagster-dbt (0.29.27), like the two in `ThreadDbtCli`: recheck on upgrade.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import traceback
import types
from contextlib import contextmanager
from pathlib import Path

import dagster_dbt.core.dbt_cli_invocation as _invocation

from ..settings import ThreadSettings

# dbt's console is the pipe (its events); the log file's depth is the caller's (--log-level-file).
_QUIET = ["--log-level", "none"]
_LOCK = threading.Lock()
_INVOCATION = threading.Lock()


class DbtThread:
    """What dagster-dbt uses of a `subprocess.Popen` (args, stdout, wait, returncode,
    send_signal), for a dbt invocation running in a thread of this process."""

    def __init__(self, args, *, env: dict[str, str], **_popen):
        self.args = list(args)
        self.returncode: int | None = None
        read, self._write = os.pipe()
        self.stdout = os.fdopen(read, "rb")
        # dbt reads its flags from the environment (DBT_TARGET_PATH, DBT_LOG_FORMAT, ...) and the
        # profile reads ours: the variables dagster-dbt would give the subprocess, while dbt runs.
        self._env = {k: v for k, v in env.items() if os.environ.get(k) != v}
        self._thread = threading.Thread(target=self._run, name="dbt", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from dbt.cli.main import dbtRunner
        from dbt_common.events.functions import msg_to_dict

        out = os.fdopen(self._write, "wb")

        def emit(event: dict) -> None:
            try:
                out.write(json.dumps(event, default=str).encode() + b"\n")
                out.flush()
            except (BrokenPipeError, ValueError):  # the reader stopped (an interrupted step)
                pass

        def on_event(msg) -> None:
            if msg.info.level != "debug":  # what dbt prints at its default console level
                emit(msg_to_dict(msg))

        def failed(e: BaseException) -> None:  # as an error event: dagster-dbt names it in the failure
            emit({"info": {"name": "InProcessDbtError", "level": "error", "ts": _now(),
                           "msg": "".join(traceback.format_exception(e)).strip()}, "data": {}})

        saved = {k: os.environ.get(k) for k in self._env}
        os.environ.update(self._env)
        code = 2
        try:
            key, project = _vars_of(self.args), _project_state()
            with _artifacts_not_written() as parsed:
                result = dbtRunner(manifest=_parsed(key, project), callbacks=[on_event]).invoke(
                    [*self.args[1:], *_QUIET])
            # After a failure (a test, an error half way) the next invocation parses afresh.
            _remember(key, project, parsed[0] if result.success and parsed else None)
            if result.exception is not None:
                failed(result.exception)
            code = 0 if result.success else (1 if result.exception is None else 2)
        except BaseException as e:  # noqa: BLE001 - reported as dbt's own failure, never swallowed
            failed(e)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            _close_duckdb()
            self.returncode = code
            try:
                out.close()
            except BrokenPipeError:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, _sig) -> None:
        """An interrupted step (the run terminated) stops reading; dbt in its thread ends with the
        process. Nothing to forward a signal to."""


# Where dbt-core calls write_manifest during a build: after parsing, and again at the end.
MANIFEST_WRITERS = ("dbt.parser.manifest", "dbt.task.runnable")

# The project as dbt last parsed it in this process: (its --vars, which a parse renders into the
# models' configs; the project's files then; dbt's Manifest). Given to the next invocation with
# the same of both (`dbtRunner(manifest=...)`, dbt's own way to reuse a parse), which then reads no
# file of the project: 0.3-0.4 s of each invocation. One kept: a process builds one data directory.
_PARSED: tuple[str, tuple, object] | None = None


def _vars_of(args: list[str]) -> str:
    raw = args[args.index("--vars") + 1] if "--vars" in args else "{}"
    try:
        return json.dumps(json.loads(raw), sort_keys=True)
    except ValueError:  # YAML, as dbt also takes: compared as written
        return raw


def _project_state() -> tuple:
    from ..dbt_project import project_files

    return tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in project_files()))


def _parsed(key: str, project: tuple):
    return _PARSED[2] if _PARSED is not None and _PARSED[:2] == (key, project) else None


def _remember(key: str, project: tuple, manifest) -> None:
    global _PARSED
    _PARSED = None if manifest is None else (key, project, manifest)


@contextmanager
def _artifacts_not_written():
    """dbt writes manifest.json into the run's target folder twice per invocation (0.5 s each at
    10,000 units, a tenth of an ECO's dbt), and graph.gpickle once (its graph with every node
    serialized: 0.3 s). Nothing reads them: Dagster, the lineage and the docs read the project's
    manifest (`prepare()`), dbt's next parse reads its own partial_parse.msgpack, still written, and
    run_results.json is still written. What writing the manifest had as side effects (its parent,
    child and group maps) is still done. Private seams of the exactly pinned dbt-core: recheck on
    upgrade (tests/unit/test_dbt_in_process.py fails if they move)."""
    import importlib

    from dbt.compilation import Compiler

    written = []  # what dbt would have written: the parsed manifest, and the same after the run

    def maps_only(manifest, target_path, which=None):
        manifest.build_parent_and_child_maps()
        manifest.build_group_map()
        written.append(manifest)

    with _INVOCATION:  # dbt-duckdb holds one database per process: one in-process dbt at a time anyway
        from dbt.parser.manifest import write_manifest

        modules = [importlib.import_module(name) for name in MANIFEST_WRITERS]
        for module in modules:
            if getattr(module, "write_manifest", None) is not write_manifest:
                raise RuntimeError(f"{module.__name__}.write_manifest is not dbt's write_manifest any more: "
                                   "recheck orchestration/defs/dbt_in_process.py against this dbt-core")
        for module in modules:
            module.write_manifest = maps_only
        write_graph_file, Compiler.write_graph_file = Compiler.write_graph_file, _graph_not_written
        try:
            yield written
        finally:
            Compiler.write_graph_file = write_graph_file
            for module in modules:
                module.write_manifest = write_manifest


def _graph_not_written(compiler, linker, manifest) -> None:
    """In place of dbt's `Compiler.write_graph_file` (see `_artifacts_not_written`)."""


def warm(settings: ThreadSettings | None = None) -> None:
    """Pay once, in a process that forks runs (`thread serve`'s fork server), what each run's first
    dbt invocation would pay: dbt's imports, the JSON schemas and serializers it builds on first
    use, and every macro's compiled template (dbt keeps those per process, keyed by their text).
    About 1.5 s of each refresh at 10,000 units. A `dbt parse` of the project with the runs' vars
    (their `settings`), kept for their invocations, then every macro of the parsed manifest
    compiled. The parse starts from dbt's last one in the runs' target folder (else the project's).
    Runs still work cold, so a failure here is reported, not raised."""
    import shutil
    import sys
    import tempfile

    from ..dbt_project import DBT_DIR, PROJECT

    try:
        from dbt.cli.main import dbtRunner
        from dbt.constants import PARTIAL_PARSE_FILE_NAME
        from dbt_common.clients.jinja import template_cache

        args = ["--vars", json.dumps(settings.dbt_vars())] if settings else []
        key, project = _vars_of(args), _project_state()
        with tempfile.TemporaryDirectory() as tmp:
            for parsed in (Path(settings.dbt_target_dir if settings else tmp) / PARTIAL_PARSE_FILE_NAME,
                           PROJECT.manifest_path.parent / PARTIAL_PARSE_FILE_NAME):
                if parsed.exists():
                    shutil.copy(parsed, tmp)
                    break
            with _artifacts_not_written():
                result = dbtRunner().invoke([
                    "parse", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target-path", tmp,
                    "--log-path", tmp, "--log-level", "none", "--log-level-file", "none",
                    "--no-send-anonymous-usage-stats", "--no-version-check", *args])
        if not result.success:
            raise RuntimeError(result.exception or "dbt parse failed")
        _remember(key, project, result.result)
        for macro in result.result.macros.values():
            template_cache.get_node_template(macro)
    except Exception as e:  # noqa: BLE001 - a warm-up: runs still work cold
        print(f"dbt warm-up skipped ({type(e).__name__}: {e}); each run's first dbt invocation pays it",
              file=sys.stderr)
    finally:
        _close_duckdb()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def _close_duckdb() -> None:
    """dbt-duckdb keeps its database open for the life of the process (a class attribute of the
    pinned dbt-duckdb); close it, so the step's later reads open the build database afresh and its
    memory is returned."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        env, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if env is not None:
        env.close()


@contextmanager
def in_process():
    """Within: dagster-dbt's `dbt.cli(...)` starts dbt in a thread of this process."""
    with _LOCK:
        module = _invocation.subprocess
        _invocation.subprocess = types.SimpleNamespace(Popen=DbtThread, PIPE=subprocess.PIPE,
                                                       STDOUT=subprocess.STDOUT)
        try:
            yield
        finally:
            _invocation.subprocess = module
