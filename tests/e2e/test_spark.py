"""The same thread on Apache Spark: THREAD_ENGINE=spark builds the small enterprise on a standalone
Spark cluster (master and worker on 127.0.0.1, started and stopped here), and every published
thread and twin table equals the DuckDB build's. (The spec's worked example runs on both engines in
tests/integration/test_worked_example.py.)"""

from __future__ import annotations

import pytest

from tests.helpers import SparkCluster, build, published


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    spark = SparkCluster(tmp_path_factory.mktemp("spark"))
    yield spark
    spark.stop()


def test_every_published_table_is_the_same_on_spark(small_sources, built_small, cluster, tmp_path):
    result = build(small_sources, tmp_path / "data", THREAD_ENGINE="spark", THREAD_SPARK_MASTER=cluster.url)
    assert result.ok, result.failed
    # The models ran on the cluster: dbt's driver registered there as an application.
    apps = cluster.state()["completedapps"] + cluster.state()["activeapps"]
    assert any(a["name"] == "digital-thread dbt" for a in apps), apps
    spark_tables = published(tmp_path / "data" / "warehouse.duckdb")
    duckdb_tables = published(built_small / "warehouse.duckdb")
    assert sorted(spark_tables) == sorted(duckdb_tables)
    assert len(spark_tables) >= 20 and sum(map(len, spark_tables.values())) > 10_000
    for name, rows in duckdb_tables.items():
        assert spark_tables[name] == rows, name
