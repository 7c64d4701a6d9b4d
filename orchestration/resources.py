"""Dagster resources besides the settings: the writer lock every writing run holds."""

from __future__ import annotations

import os
import time

import dagster as dg
from filelock import FileLock, Timeout
from pydantic import PrivateAttr

from .settings import ThreadSettings


class WriterLock(dg.ConfigurableResource):
    """Held for the whole run by every asset that writes the lake, the build database or the
    warehouse: runs that write serialize (a sensor-triggered refresh waits for a manual `thread
    build` and vice versa) instead of interleaving two writers. The kernel drops the lock when
    its holder dies, so a crashed run never blocks the next one."""

    thread: ThreadSettings
    wait_timeout_s: float = 3600.0
    _lock: FileLock | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        path = self.thread.writer_lock
        holder = path.with_name(path.name + ".holder")
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, mode=0o600)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if context.log:
                who = holder.read_text().strip() if holder.exists() else "another run"
                context.log.info(f"Waiting for the writer lock {path} (held by {who}).")
            started = time.monotonic()
            try:
                lock.acquire(timeout=self.wait_timeout_s, poll_interval=0.2)
            except Timeout:
                raise dg.Failure(f"Gave up after {time.monotonic() - started:.0f} s waiting for the writer lock "
                                 f"{path}.") from None
        holder.write_text(f"pid {os.getpid()}, run {context.run_id}")
        self._lock = lock

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def writer_lock_resource(settings: ThreadSettings) -> WriterLock:
    return WriterLock(thread=settings)
