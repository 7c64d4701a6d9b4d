"""`thread serve`'s wrappers of Dagster's code server and daemon (orchestration/services.py)."""

from __future__ import annotations

import inspect

from orchestration import services


def test_the_module_served_is_what_the_fork_server_imports():
    argv = ["api", "grpc", "--port", "4000", "-m", "orchestration.definitions", "-d", "/repo", "-a", "defs"]
    assert services._modules_served(argv) == ["orchestration.definitions"]
    assert services._modules_served(["api", "grpc", "--module-name", "x.y"]) == ["x.y"]
    assert services._modules_served(["api", "grpc", "-f", "defs.py"]) == []


def test_the_dagster_seams_it_replaces_are_still_used_by_dagster():
    """Private to the pinned Dagster: an upgrade that moves them fails here, not in `thread serve`."""
    from dagster._daemon import controller, daemon, sensor
    from dagster._grpc import server

    assert "MIN_INTERVAL_LOOP_TIME" in inspect.getsource(sensor.execute_sensor_iteration_loop)
    assert "QueuedRunCoordinatorDaemon(\n            interval_seconds=" in inspect.getsource(
        controller.create_daemon_of_type)
    assert "shutdown_event.wait(0.5)" in inspect.getsource(daemon.IntervalDaemon.core_loop)
    assert "get_python_environment_entry_point(" in inspect.getsource(server.open_server_process)
    assert "self._mp_ctx.Process(" in inspect.getsource(server.DagsterApiServer.StartRun)
    assert 'self._mp_ctx = multiprocessing.get_context("spawn")' in inspect.getsource(server.DagsterApiServer.__init__)


def test_a_moved_seam_is_named_in_the_error():
    import pytest

    class Gone:
        __name__ = "dagster._grpc.server"

    with pytest.raises(RuntimeError, match=r"dagster\._grpc\.server\.get_python_environment_entry_point is gone"):
        services._seam(Gone(), "get_python_environment_entry_point")


def test_what_the_fork_server_preloads_is_importable():
    """The modules a run imports on first use, preloaded by the fork server (orchestration.warm_runs):
    a renamed one would end the warm-up there (the fork server ignores a failed preload), and
    every run would start cold again."""
    import importlib

    from orchestration import warm_runs

    for name in warm_runs.RUN_IMPORTS:
        importlib.import_module(name)
    assert importlib.import_module(services.WARM_MODULE) is warm_runs


def test_the_daemon_looks_at_sensors_every_second_and_at_the_run_queue_every_half_second(monkeypatch):
    from dagster._daemon import sensor
    from dagster._daemon.run_coordinator import queued_run_coordinator_daemon as queue

    QueuedRunCoordinatorDaemon = queue.QueuedRunCoordinatorDaemon
    monkeypatch.setattr(sensor, "MIN_INTERVAL_LOOP_TIME", sensor.MIN_INTERVAL_LOOP_TIME)
    monkeypatch.setattr(QueuedRunCoordinatorDaemon, "__init__", QueuedRunCoordinatorDaemon.__init__)
    assert QueuedRunCoordinatorDaemon(interval_seconds=1).interval_seconds == 1
    services._quicker_daemon()
    assert sensor.MIN_INTERVAL_LOOP_TIME == services.SENSOR_LOOP_SECONDS
    assert QueuedRunCoordinatorDaemon(interval_seconds=1).interval_seconds == services.DEQUEUE_SECONDS
    assert QueuedRunCoordinatorDaemon(interval_seconds=0.25).interval_seconds == 0.25


def test_dagster_storage_is_asked_once_what_cannot_change(tmp_path):
    """A sensor tick and a run start each open Dagster's SQLite storages, which ask alembic for the
    head revision: after storage_asked_less, opening them reads no migration script again, and
    finds the same head revision. And what they found true once (a table, a data migration) is
    not asked again."""
    import subprocess
    import sys

    from dagster._core.storage import sql
    from dagster._core.storage.event_log import sql_event_log
    from dagster._core.storage.schedules import sql_schedule_storage

    assert "ScriptDirectory.from_config(alembic_config)" in inspect.getsource(sql.check_alembic_revision)
    assert "self.has_secondary_index(" in inspect.getsource(sql_event_log.SqlEventLogStorage)
    assert "self.has_instigators_table()" in inspect.getsource(sql_schedule_storage.SqlScheduleStorage)
    script = f"""
from alembic.script import ScriptDirectory
from dagster._core.storage import sql
from dagster._core.storage.runs.sqlite import sqlite_run_storage
head = ScriptDirectory.from_config(sql.get_alembic_config(sqlite_run_storage.__file__)).get_current_head()
from orchestration import services
services.storage_asked_less()
services.storage_asked_less()  # a second call wraps nothing twice
def unread(self):
    raise AssertionError("migration scripts read again")
ScriptDirectory._load_revisions = unread
import dagster as dg
for _ in range(2):
    instance = dg.DagsterInstance.local_temp({str(tmp_path)!r})
    revision, found = instance.run_storage.alembic_version()
    assert found == head == revision, (found, head, revision)
    instance.dispose()
# What was found true is not asked again (no connection opened); what was not is.
from dagster._core.storage.event_log.migration import ASSET_KEY_INDEX_COLS
from dagster._core.storage.runs.migration import RUN_PARTITIONS
from dagster._core.storage.schedules.migration import SCHEDULE_TICKS_SELECTOR_ID
questions = [(instance.event_log_storage, "has_secondary_index", (ASSET_KEY_INDEX_COLS,), ("index_connection",)),
             (instance.run_storage, "has_built_index", (RUN_PARTITIONS,), ("connect",)),
             (instance.schedule_storage, "has_built_index", (SCHEDULE_TICKS_SELECTOR_ID,), ("connect",)),
             (instance.schedule_storage, "has_instigators_table", (), ("connect",))]
asked = {{(type(storage).__module__ + "." + type(storage).__name__, method) for storage, method, _, _ in questions}}
assert asked == {{(path, m) for path, methods in services.ONCE_TRUE.items() for m in methods}}, asked
for storage, method, args, connections in questions:
    assert getattr(storage, method)(*args), method
    opened = []
    for name in connections:
        real = getattr(storage, name)
        setattr(storage, name, lambda real=real, **kw: (opened.append(1), real(**kw))[1])
    assert getattr(storage, method)(*args) and not opened, method
    if args:
        assert not getattr(storage, method)("never run") and opened, method
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_dagster_sqlite_storages_keep_their_connections_and_never_write_to_a_removed_file(tmp_path):
    """Dagster opens (and closes) a new SQLite connection for every read and write; after
    storage_asked_less, one engine per database file serves every instance of the process: storing
    events and reading runs opens no connection. A database file removed (a wipe, a Dagster home
    deleted and made again) is reopened, never written through the old connection; a forked
    process makes its own."""
    import subprocess
    import sys

    from dagster._core.storage.event_log.sqlite import sqlite_event_log
    from dagster._core.storage.runs.sqlite import sqlite_run_storage
    from dagster._core.storage.schedules.sqlite import sqlite_schedule_storage

    # What is replaced is still Dagster's engine-per-use (an upgrade that pools would show here).
    for module in (sqlite_event_log, sqlite_run_storage, sqlite_schedule_storage):
        assert "poolclass=NullPool" in inspect.getsource(module), module.__name__
    script = f"""
import os, shutil, sqlite3
from pathlib import Path
import dagster as dg
from dagster._core.test_utils import create_run_for_test
from orchestration import services
services.storage_asked_less()
services.storage_asked_less()  # a second call wraps nothing twice
home = Path({str(tmp_path)!r}) / "home"

def instance():
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("")
    return dg.DagsterInstance.from_config(str(home))

import sqlalchemy as sa
opened = []
sa.event.listen(sa.pool.Pool, "connect", lambda dbapi, record: opened.append(dbapi))
with instance() as first:
    run = create_run_for_test(first, job_name="one")
    first.report_engine_event("warm", run)
    first.report_runless_asset_event(dg.AssetMaterialization(asset_key="a"))
    first.get_runs()
    assert opened, "no connection was seen opening: this test would measure nothing"
with instance() as second:  # a new instance, as every sensor tick makes (opening it connects)
    second.report_engine_event("event 0", run)
    warm = len(opened)
    for i in range(1, 30):
        second.report_engine_event(f"event {{i}}", run)
        second.report_runless_asset_event(dg.AssetMaterialization(asset_key="a"))
        second.get_runs()
    assert len(opened) == warm, opened[warm:]
    assert len(second.all_logs(run.run_id)) == 31
    assert len(opened) == warm, opened[warm:]
    second.wipe()
    after = create_run_for_test(second, job_name="two")
    second.report_engine_event("after the wipe", after)
    assert [r.job_name for r in second.get_runs()] == ["two"]
    assert len(second.all_logs(after.run_id)) == 1
shutil.rmtree(home)
with instance() as third:
    assert third.get_runs() == []
    run = create_run_for_test(third, job_name="three")
    third.report_runless_asset_event(dg.AssetMaterialization(asset_key="b"))
# What was written is in the files on disk now, not behind a connection to a removed one.
assert sqlite3.connect(str(home / "history" / "runs.db")).execute("select count(*) from runs").fetchone() == (1,)
assert sqlite3.connect(str(home / "history" / "runs" / "index.db")).execute(
    "select count(*) from event_logs where asset_key like '%b%'").fetchone() == (1,)
url = "sqlite:///" + str(home / "history" / "runs.db")
mine = services._kept_engine(url)
child = os.fork()
if child == 0:
    os._exit(0 if services._kept_engine(url) is not mine else 1)
assert os.waitpid(child, 0)[1] == 0, "a forked process used its parent's engine"
assert len(services._ENGINES) <= services.KEPT_ENGINES + 1
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
