"""The settings' deployment switches: the Dagster instance's storage, the engine, the lake's place."""

from __future__ import annotations

import pytest

from orchestration.settings import ThreadSettings, dagster_home, sqlalchemy_pg_url


def test_a_postgres_url_gets_the_driver_dagster_needs():
    for given in ("postgresql://u:p@h:5432/d", "postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"):
        assert sqlalchemy_pg_url(given) == "postgresql+psycopg2://u:p@h:5432/d"
    with pytest.raises(ValueError, match="THREAD_DAGSTER_PG_URL must be a PostgreSQL URL"):
        sqlalchemy_pg_url("mysql://u@h/d")


def test_the_dagster_home_follows_the_postgres_url_but_keeps_a_config_of_your_own(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    settings = ThreadSettings(sources_dir=".", data_dir=str(tmp_path))
    config = dagster_home(settings) / "dagster.yaml"
    assert "storage:" not in config.read_text()
    team = ThreadSettings(sources_dir=".", data_dir=str(tmp_path), dagster_postgres_url="postgresql://u@h/d")
    dagster_home(team)
    assert "postgres_url:\n      env: THREAD_DAGSTER_PG_URL" in config.read_text()
    dagster_home(settings)
    assert "storage:" not in config.read_text()
    config.write_text("telemetry:\n  enabled: false\n")
    dagster_home(team)
    assert config.read_text() == "telemetry:\n  enabled: false\n"


def test_the_engine_is_duckdb_or_spark(monkeypatch):
    settings = ThreadSettings(sources_dir=".", data_dir=".")
    monkeypatch.delenv("THREAD_ENGINE", raising=False)
    assert settings.engine == "duckdb" and "engine" not in settings.dbt_vars()
    monkeypatch.setenv("THREAD_ENGINE", "Spark")
    monkeypatch.setenv("THREAD_SPARK_MASTER", "spark://127.0.0.1:7077")
    assert settings.dbt_vars()["engine"] == "spark"
    assert settings.dbt_vars()["spark_master"] == "spark://127.0.0.1:7077"
    monkeypatch.setenv("THREAD_ENGINE", "presto")
    with pytest.raises(ValueError, match="THREAD_ENGINE must be one of duckdb, spark"):
        settings.engine  # noqa: B018


def test_the_lake_is_a_folder_or_an_object_store_prefix(tmp_path, monkeypatch):
    from orchestration import lake
    from orchestration.lineage import delta

    monkeypatch.delenv("THREAD_LAKE_URI", raising=False)
    settings = ThreadSettings(sources_dir=".", data_dir=str(tmp_path))
    assert settings.lake_dir == tmp_path / "lake" and not lake.is_remote(settings.lake_dir)
    monkeypatch.setenv("THREAD_LAKE_URI", str(tmp_path / "elsewhere"))
    assert settings.lake_dir == tmp_path / "elsewhere"
    monkeypatch.setenv("THREAD_LAKE_URI", "s3://plant-lake/thread")
    where = settings.lake_dir
    assert lake.is_remote(where) and str(where) == "s3://plant-lake/thread"
    # Joins keep the scheme (a plain Path would collapse `s3://` to `s3:/`).
    assert str(lake.raw_table(where, "plm", "parts")) == "s3://plant-lake/thread/raw/plm/parts"
    assert str(lake.raw_table("s3://plant-lake/thread", "plm", "parts")) == "s3://plant-lake/thread/raw/plm/parts"
    assert delta(lake.raw_table(where, "plm", "parts")).namespace == "s3://plant-lake"
    assert delta(lake.raw_table(where, "plm", "parts")).name == "thread/raw/plm/parts"
