"""How `thread serve` runs Dagster's code server and daemon: Dagster's own commands
(`dagster code-server start`, `dagster-daemon run`), with two start-up costs of a live refresh cut.

- Runs start from a fork of a process that has the definitions imported already. Dagster's code
  server starts each run in a new interpreter (multiprocessing's "spawn"), which imports Dagster,
  dbt and the definitions again before the run's first step: 3.4 s of every launch here, paid
  twice between an ECO and its published twins (the thread's run, then the twins'). Runs start
  from multiprocessing's fork server instead, which imports the definitions once, when the code
  server starts (a reload from the UI restarts the server process, and with it the fork server).
  The fork server also warms dbt once (`orchestration.warm_runs`): a run's first dbt invocation
  in a fresh process took about 1.5 s longer than the next one.
- Dagster's SQLite storage is asked less often what cannot change while a process runs
  (`storage_asked_less`). Its schema revision is read from the migration scripts once per process,
  not each time a storage opens: a sensor's every tick opens a new instance (three storages), and
  alembic read about 60 scripts from disk for each (40 ms a tick; 0.24 s of each run's start).
  And what, once true, stays true (a table created, a data migration completed: `ONCE_TRUE`) is
  remembered, as Dagster's Postgres storages do: the SQLite ones asked their databases again
  before most reads and writes. The event log's question alone was about 1.5 s of CPU in the
  runs of a live ECO at 10,000 units (once for each model's output and each check); the
  schedule storage's were a fifth of the daemon's CPU while idle (every sensor tick). And the
  storages keep their connections (`_kept_engine`): Dagster made an engine, opened a connection
  and closed it (checkpointing the write-ahead log) for every event stored, 2.7 ms each, 6.5 ms an
  asset event; kept, 0.6 and 1.9 ms. `thread build` and the benchmark ask the storage the same way.
- The daemon evaluates sensors every 1.25 s rather than every 5 s, side by side (`sensors:
  use_threads` in the `dagster.yaml` `thread` writes), so each sensor ticks every loop: a little
  over its own `minimum_interval_seconds` (1 s here, `defs/runs.SENSOR_SECONDS`); and it looks at
  the run queue every half second rather than every second (the shortest
  `dequeue_interval_seconds`, a whole number): a queued run waits at most half a second for it.

Nine private seams of the exactly pinned Dagster and alembic are used (recheck them on an upgrade):
`dagster._grpc.server.get_python_environment_entry_point` (the command `code-server start` runs
its server process with, pointed at this module), `DagsterApiServer._mp_ctx` (the multiprocessing
context runs start from), `dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME`, the interval
`QueuedRunCoordinatorDaemon` is built with, `alembic.script.ScriptDirectory.from_config` with
Dagster's `get_alembic_config` (how Dagster finds its head revision), the methods
`ONCE_TRUE` names, and the three that open a connection (`SqliteEventLogStorage._connect`,
`SqliteRunStorage.connect`, `SqliteScheduleStorage.connect`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections import OrderedDict
from contextlib import contextmanager

# This module's name, also when it runs as `python -m` (its `__name__` is then "__main__").
MODULE = __spec__.name
# What the fork server imports after the definitions, before it forks any run.
WARM_MODULE = "orchestration.warm_runs"
# The daemon's sensor loop: a little longer than the sensors' own interval (defs/runs.SENSOR_SECONDS).
# At exactly that interval a sensor whose tick had started a moment later in the loop before was
# still "under its interval" and waited a whole loop more: ticks came 1.4-1.9 s apart, not 1 s.
# The sensors are evaluated side by side (dagster.yaml `sensors: use_threads`), so each tick starts
# soon after its loop's start; but while runs use both cores a tick started up to 0.25 s late,
# and at 1.1 s the next loop found it under its interval: the twins' sensor skipped the loop right
# after an ECO's thread run, 1.1 s more before its twins were published. At 1.25 s every loop
# ticks every sensor.
SENSOR_LOOP_SECONDS = 1.25
# Dagster's daemons wait in half-second slices between iterations: the shortest useful interval.
DEQUEUE_SECONDS = 0.5


def _seam(owner, name: str):
    """A private attribute of Dagster this module replaces: a clear error if an upgrade moved it."""
    if not hasattr(owner, name):
        where = getattr(owner, "__name__", type(owner).__qualname__)
        raise RuntimeError(f"{where}.{name} is gone (a Dagster upgrade?): orchestration/services.py "
                           "needs a new seam, or `thread serve` can run Dagster's own commands again")


# Marks a function this module put in place of Dagster's or alembic's: a second call wraps nothing twice.
WRAPPED = "_thread_wrapped"


def storage_asked_less() -> None:
    """In this process and the processes it forks after this."""
    _read_migrations_once()
    _remember_once_true()
    _connections_kept()


# Dagster's SQLite storages make a new engine and open a new connection for every read and write,
# and close both after (SQLAlchemy's NullPool): for each event stored, an engine, a connection,
# and at its close a checkpoint of the write-ahead log (2.7 ms an event, 6.5 ms an asset event,
# here). Kept instead: one engine per database file and process, with SQLAlchemy's own pool (its
# default for a SQLite file), for every instance the process opens (a sensor's every tick opens
# one). Transactions are as before (one per use); only the connection outlives it.
KEPT_ENGINES = 16  # database files per process (three for the instance, and the runs' logs)
_ENGINES: OrderedDict[tuple[int, str], object] = OrderedDict()
_ENGINES_LOCK = threading.Lock()


def _kept_engine(url: str, **connect_args):
    """This process's engine of a SQLite database file, the most recently used KEPT_ENGINES kept.
    A connection whose file was removed or replaced since it opened (a wiped run log, a Dagster
    home deleted and made again) is not used again: the pool opens a new one."""
    import sqlalchemy as sa

    key = (os.getpid(), url)  # a forked process never uses its parent's connections
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            _ENGINES.move_to_end(key)
            return engine
        engine = sa.create_engine(url, connect_args=connect_args, pool_size=2, max_overflow=-1)
        path = engine.url.database
        if path and path != ":memory:" and not engine.url.query.get("uri"):
            def inode() -> int | None:
                try:
                    return os.stat(path).st_ino
                except OSError:
                    return None

            sa.event.listen(engine, "connect", lambda _dbapi, record: record.info.update(inode=inode()))

            def checkout(_dbapi, record, _proxy):
                if record.info.get("inode") is None or inode() != record.info["inode"]:
                    raise sa.exc.DisconnectionError(f"{path} was removed or replaced")

            sa.event.listen(engine, "checkout", checkout)
        _ENGINES[key] = engine
        mine = [k for k in _ENGINES if k[0] == key[0]]
        for old in mine[:-KEPT_ENGINES]:
            _ENGINES.pop(old).dispose()
        return engine


def _connections_kept() -> None:
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
    from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

    for owner, name in ((SqliteEventLogStorage, "_connect"), (SqliteEventLogStorage, "conn_string_for_shard"),
                        (SqliteEventLogStorage, "_initdb"), (SqliteRunStorage, "connect"),
                        (SqliteScheduleStorage, "connect")):
        _seam(owner, name)
    if getattr(SqliteRunStorage.connect, WRAPPED, False):
        return

    @contextmanager
    def shard_connection(self, shard: str):
        # Dagster's own, less the engine made and disposed each time.
        with self._db_lock:
            engine = _kept_engine(self.conn_string_for_shard(shard), timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    @contextmanager
    def connection(self):
        with _kept_engine(self._conn_string).connect() as conn, conn.begin():
            yield conn

    for function in (shard_connection, connection):
        setattr(function, WRAPPED, True)
    SqliteEventLogStorage._connect = shard_connection
    SqliteRunStorage.connect = connection
    SqliteScheduleStorage.connect = connection


# What Dagster's SQLite storages ask their databases again before most reads and writes (a
# connection, a query, and a close that checkpoints the write-ahead log), whose answer, once yes,
# stays yes while the process runs: a table created, a data migration completed. Its Postgres
# storages remember these; short of wiping a storage, which nothing here does, it is safe.
ONCE_TRUE = {
    "dagster._core.storage.event_log.sqlite.sqlite_event_log.SqliteEventLogStorage": ("has_secondary_index",),
    "dagster._core.storage.runs.sqlite.sqlite_run_storage.SqliteRunStorage": ("has_built_index",),
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage.SqliteScheduleStorage": (
        "has_built_index", "has_instigators_table"),
}


def _remember_once_true() -> None:
    import importlib

    for path, methods in ONCE_TRUE.items():
        module, name = path.rsplit(".", 1)
        storage = getattr(importlib.import_module(module), name)
        for method in methods:
            _seam(storage, method)
            asks = getattr(storage, method)
            if not getattr(asks, WRAPPED, False):
                setattr(storage, method, _remembering(asks))


def _remembering(asks):
    def remembered(self, *args):
        known = self.__dict__.setdefault("_thread_known_true", set())
        question = (asks.__name__, *args)
        if question not in known and asks(self, *args):
            known.add(question)
        return question in known

    setattr(remembered, WRAPPED, True)
    return remembered


def _read_migrations_once() -> None:
    """alembic's ScriptDirectory, one per script location for the life of the process, with
    Dagster's head revision read now: the installed migration scripts cannot change under a running
    process. A process that forks after this (the fork server) hands the read scripts to its forks."""
    from alembic.script import ScriptDirectory
    from dagster._core.storage import sql
    from dagster._core.storage.runs.sqlite import sqlite_run_storage

    _seam(ScriptDirectory, "from_config")
    _seam(sql, "get_alembic_config")
    if getattr(ScriptDirectory.from_config, WRAPPED, False):
        return
    load = ScriptDirectory.from_config.__func__
    read: dict[tuple, ScriptDirectory] = {}
    lock = threading.Lock()

    def from_config(cls, config):
        key = (cls, config.get_main_option("script_location"))
        with lock:
            if key not in read:
                read[key] = load(cls, config)
            return read[key]

    setattr(from_config, WRAPPED, True)
    ScriptDirectory.from_config = classmethod(from_config)
    ScriptDirectory.from_config(sql.get_alembic_config(sqlite_run_storage.__file__)).as_revision_number("head")


def _modules_served(argv: list[str]) -> list[str]:
    """The code location's module (`-m`/`--module-name`): what every run imports."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("-m", "--module-name")]


def _forkserver(preload: list[str]) -> multiprocessing.context.BaseContext:
    """The fork server, started now: its import of the definitions is paid at start-up, not by
    the first run."""
    import multiprocessing.forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    multiprocessing.forkserver.ensure_running()
    return context


def _serve_runs_from_forks(argv: list[str]) -> None:
    """`dagster api grpc` (the server process): runs start as forks of the fork server."""
    from dagster._grpc import server

    context = _forkserver([*_modules_served(argv), WARM_MODULE])
    init = server.DagsterApiServer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        _seam(self, "_mp_ctx")
        self._mp_ctx = context

    server.DagsterApiServer.__init__ = __init__


def _start_server_process_here() -> None:
    """`dagster code-server start` (a proxy that restarts its server process on a reload): that
    process runs this module too."""
    from dagster._grpc import server

    _seam(server, "get_python_environment_entry_point")
    server.get_python_environment_entry_point = lambda executable: [executable, "-m", MODULE]


def _quicker_daemon() -> None:
    """`dagster-daemon run`: sensors looked at every second, the run queue every half second."""
    from dagster._daemon import sensor
    from dagster._daemon.run_coordinator import queued_run_coordinator_daemon as queue

    _seam(sensor, "MIN_INTERVAL_LOOP_TIME")
    sensor.MIN_INTERVAL_LOOP_TIME = SENSOR_LOOP_SECONDS
    init = queue.QueuedRunCoordinatorDaemon.__init__

    def __init__(self, interval_seconds, *args, **kwargs):
        init(self, min(interval_seconds, DEQUEUE_SECONDS), *args, **kwargs)

    queue.QueuedRunCoordinatorDaemon.__init__ = __init__


def main(argv: list[str]) -> int | None:
    storage_asked_less()
    if argv[:1] == ["dagster-daemon"]:
        from dagster._daemon import cli

        _quicker_daemon()
        sys.argv = argv
        return cli.main()
    from dagster._cli import main as dagster

    if argv[:2] == ["api", "grpc"]:
        _serve_runs_from_forks(argv)
    elif argv[:2] == ["code-server", "start"]:
        _start_server_process_here()
    sys.argv = ["dagster", *argv]
    return dagster()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
