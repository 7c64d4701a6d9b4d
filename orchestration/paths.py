"""Where the data directory, the warehouse and the dbt project are, without importing Dagster:
the `thread` command's quick questions need these and nothing else. The settings object derives
its paths from the same functions."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DBT_DIR = REPO / "dbt_project"


def data_root(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else THREAD_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get("THREAD_DATA_DIR") or "data").resolve()


def warehouse(root: Path) -> Path:
    """The analysts' DuckDB file in a data directory."""
    return Path(root) / "warehouse.duckdb"


def lake_catalog(root: Path) -> Path:
    """The lake's catalog for DuckDB readers (views over the raw tables) in a data directory."""
    return Path(root) / "lake.duckdb"
