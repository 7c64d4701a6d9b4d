"""Deployment configuration, read from environment variables through Dagster resources.

Nothing here reads the environment at import time: `dg.EnvVar` is resolved when a run starts,
so the same definitions serve `thread build`, `thread serve` and tests with their own paths.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from .extract import Sources

DEMO_PII_SALT = "digital-thread-demo-salt"


class ThreadSettings(dg.ConfigurableResource):
    """Where the sources are and where everything a run writes goes (all under data_dir)."""

    sources_dir: str
    data_dir: str
    mes_database_url: str = ""
    pii_salt: str = DEMO_PII_SALT
    # 1 = a twin partition per serial number. Past ~100,000 units (Dagster's guidance for
    # partitions per asset), group units into shards of 10, 100, ... consecutive serials.
    twin_units_per_partition: int = 1

    @property
    def sources_root(self) -> Path:
        return Path(self.sources_dir).resolve()

    def sources(self) -> Sources:
        url = self.mes_database_url or Sources.default_mes_url(self.sources_root)
        return Sources(self.sources_root, url)

    @property
    def data_root(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def lake_dir(self) -> Path:
        return self.data_root / "lake"

    @property
    def build_db(self) -> Path:
        # Not named after a schema: DuckDB could not tell the catalog `thread` from the schema.
        return self.data_root / "build" / "build.duckdb"

    @property
    def warehouse(self) -> Path:
        return self.data_root / "warehouse.duckdb"

    @property
    def dbt_target_dir(self) -> Path:
        return self.data_root / "build" / "dbt_target"

    @property
    def dbt_log_dir(self) -> Path:
        return self.data_root / "logs" / "dbt"


class LakeLock(dg.ConfigurableResource):
    """Held for the whole run by every asset that writes the lake, the build database or the
    warehouse: runs that write serialize (a sensor-triggered refresh waits for a manual `thread
    build` and vice versa) instead of interleaving two writers. The kernel drops the lock when
    its holder dies, so a crashed run never blocks the next one."""

    data_dir: str
    wait_timeout_s: float = 3600.0
    _fd: int | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        path = Path(self.data_dir).resolve() / ".writer.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait_timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and context.log:
                    holder = path.read_text().strip() or "another run"
                    context.log.info(f"Waiting for the writer lock {path} (held by {holder}).")
                    told = True
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise dg.Failure(f"Gave up after {self.wait_timeout_s:.0f} s waiting for the writer lock {path}.")
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, run {context.run_id}".encode(), 0)
        self._fd = fd

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def settings_from_env() -> ThreadSettings:
    return ThreadSettings(
        sources_dir=dg.EnvVar("THREAD_SOURCES_DIR"),
        data_dir=dg.EnvVar("THREAD_DATA_DIR"),
        mes_database_url=dg.EnvVar("MES_DATABASE_URL"),
        pii_salt=dg.EnvVar("THREAD_PII_SALT"),
        twin_units_per_partition=dg.EnvVar.int("THREAD_TWIN_UNITS_PER_PARTITION"),
    )


def lock_from_env() -> LakeLock:
    return LakeLock(data_dir=dg.EnvVar("THREAD_DATA_DIR"))
