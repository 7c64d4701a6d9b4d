"""Deployment configuration, read from environment variables through Dagster resources.

Nothing here reads the environment at import time: `dg.EnvVar` is resolved when a run starts,
so the same definitions serve `thread build`, `thread serve` and tests with their own paths.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

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


def settings_from_env() -> ThreadSettings:
    return ThreadSettings(
        sources_dir=dg.EnvVar("THREAD_SOURCES_DIR"),
        data_dir=dg.EnvVar("THREAD_DATA_DIR"),
        mes_database_url=dg.EnvVar("MES_DATABASE_URL"),
        pii_salt=dg.EnvVar("THREAD_PII_SALT"),
        twin_units_per_partition=dg.EnvVar.int("THREAD_TWIN_UNITS_PER_PARTITION"),
    )
