"""Dagster resources besides the settings: the writer lock every writing run holds."""

from __future__ import annotations

import hashlib
import os
import time

import dagster as dg
from filelock import FileLock, Timeout
from pydantic import PrivateAttr

from .settings import ThreadSettings

# One writer per Dagster instance: the advisory lock's key in the instance's PostgreSQL database.
PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"digital-thread writer").digest()[:8], "big", signed=True)


class _FileWriterLock:
    """One machine: a lock file beside the data (the kernel drops it when its holder dies)."""

    def __init__(self, settings: ThreadSettings):
        self.path = settings.writer_lock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._holder = self.path.with_name(self.path.name + ".holder")
        self._lock = FileLock(self.path, mode=0o600)

    def try_acquire(self, who: str) -> bool:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        self._holder.write_text(who)
        return True

    def holder(self) -> str:
        return self._holder.read_text().strip() if self._holder.exists() else "another run"

    def release(self) -> None:
        self._lock.release()

    def __str__(self) -> str:
        return str(self.path)


class _PostgresWriterLock:
    """A team: a PostgreSQL advisory lock in the Dagster instance's database, held by one session.
    It holds across machines, and PostgreSQL drops it when the holder's connection dies."""

    def __init__(self, settings: ThreadSettings):
        import sqlalchemy as sa

        self._engine = sa.create_engine(settings.dagster_storage_url, poolclass=sa.pool.NullPool)
        self._conn = None

    def try_acquire(self, who: str) -> bool:
        import sqlalchemy as sa

        if self._conn is None:
            self._conn = self._engine.connect()
            # Shown to whoever waits (pg_stat_activity), like the lock file's holder note.
            self._conn.execute(sa.text("select set_config('application_name', :who, false)"), {"who": who[:63]})
            self._conn.commit()
        got = self._conn.execute(sa.text("select pg_try_advisory_lock(:key)"), {"key": PG_LOCK_KEY}).scalar()
        self._conn.commit()
        return bool(got)

    def holder(self) -> str:
        import sqlalchemy as sa

        with self._engine.connect() as con:
            row = con.execute(sa.text(
                "select a.application_name, a.client_addr from pg_locks l join pg_stat_activity a using (pid) "
                # A bigint key is stored as two 32-bit halves (objsubid 1).
                "where l.locktype = 'advisory' and l.granted and l.objsubid = 1 "
                "and ((l.classid::bigint << 32) | l.objid::bigint) = :key"),
                {"key": PG_LOCK_KEY}).first()
        return f"{row[0]} on {row[1] or 'this host'}" if row else "another run"

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session, and with it the lock
            self._conn = None
        self._engine.dispose()

    def __str__(self) -> str:
        return "the PostgreSQL advisory lock of THREAD_DAGSTER_PG_URL"


def writer_lock(settings: ThreadSettings):
    return _PostgresWriterLock(settings) if settings.dagster_pg_url else _FileWriterLock(settings)


class WriterLock(dg.ConfigurableResource):
    """Held for the whole run by every asset that writes the lake, the build database or the
    warehouse (for each step, when steps run on Celery workers): writers serialize (a
    sensor-triggered refresh waits for a manual `thread build` and vice versa) instead of
    interleaving. A crashed holder never blocks the next one: its lock dies with its process."""

    thread: ThreadSettings
    wait_timeout_s: float = 3600.0
    _lock: object = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        lock = writer_lock(self.thread)
        who = f"pid {os.getpid()}, run {context.run_id}"
        if not lock.try_acquire(who):
            if context.log:
                context.log.info(f"Waiting for the writer lock {lock} (held by {lock.holder()}).")
            started = time.monotonic()
            while not lock.try_acquire(who):
                if time.monotonic() - started > self.wait_timeout_s:
                    lock.release()
                    raise dg.Failure(f"Gave up after {time.monotonic() - started:.0f} s waiting for the writer lock "
                                     f"{lock}.")
                time.sleep(0.2)
        self._lock = lock

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def writer_lock_resource(settings: ThreadSettings) -> WriterLock:
    return WriterLock(thread=settings)
