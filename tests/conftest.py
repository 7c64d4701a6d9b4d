"""Shared fixtures: small enterprises and isolated data directories, always under tmp_path."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.dbt_project import ensure_manifest
from orchestration.simulate import SimConfig, simulate

SMALL = SimConfig(seed=7, units=60, parts=120, start=date(2026, 1, 5), days=150, telemetry_every_h=12)


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest():
    # `make setup` builds it; this only covers running pytest directly after editing models.
    return ensure_manifest()


@pytest.fixture(scope="session")
def small_sources(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small") / "sources"
    simulate(out, SMALL)
    return out


def thread_env(mp: pytest.MonkeyPatch, sources: Path, data: Path) -> None:
    mp.setenv("THREAD_SOURCES_DIR", str(sources))
    mp.setenv("THREAD_DATA_DIR", str(data))
    mp.setenv("MES_DATABASE_URL", "")
    mp.setenv("THREAD_PII_SALT", "test-salt")
    mp.setenv("THREAD_TWIN_UNITS_PER_PARTITION", "1")


def build(sources: Path, data: Path):
    """The whole graph through Dagster, as `thread build` runs it, on an ephemeral instance."""
    from orchestration.build import run_build
    from orchestration.definitions import defs

    with pytest.MonkeyPatch.context() as mp:
        thread_env(mp, sources, data)
        with dg.DagsterInstance.ephemeral() as instance:
            return run_build(defs, instance, lake_dir=Path(data) / "lake")


def query(warehouse: Path, sql: str, params=None):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="session")
def built_small(small_sources, tmp_path_factory):
    """Built once per session and only read; a test that writes takes `built_small_copy`."""
    data = tmp_path_factory.mktemp("built")
    result = build(small_sources, data)
    assert result.ok, result.failed
    return data


def copy_built(sources: Path, data: Path, dest: Path) -> tuple[Path, Path]:
    """A private copy of built sources and data (every path inside them is relative)."""
    shutil.copytree(sources, dest / "sources")
    shutil.copytree(data, dest / "data")
    return dest / "sources", dest / "data"


@pytest.fixture
def built_small_copy(small_sources, built_small, tmp_path) -> tuple[Path, Path]:
    return copy_built(small_sources, built_small, tmp_path / "copy")
