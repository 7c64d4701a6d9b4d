"""The worked example of thread-schema.md, written as source files, through `thread build`, on
DuckDB and on Spark."""

from __future__ import annotations

import pytest

from tests.helpers import build, debian_program, query
from tests.sources import worked_example as example
from tests.sources import write_sources


@pytest.fixture(scope="module", params=["duckdb", "spark"])
def worked(request, tmp_path_factory):
    """Built on each engine (THREAD_ENGINE): the spec's answers hold on both (Spark: local[2])."""
    if request.param == "spark":
        debian_program("java", "openjdk-17-jre-headless")
    root = tmp_path_factory.mktemp(f"worked-{request.param}")
    sources = write_sources(root / "sources", example())
    result = build(sources, root / "data", THREAD_ENGINE=request.param, THREAD_SPARK_MASTER="local[2]")
    assert result.ok, result.failed
    return root / "data" / "warehouse.duckdb"


def rows(wh, sql):
    return sorted(query(wh, sql))


def test_unit_as_built(worked):
    assert rows(worked, "select serial_number, part_number, revision, quantity, is_substitute from thread.unit_as_built") == [
        (s, p, r, q, False)
        for s, c2 in (("U-001", "A"), ("U-002", "B"), ("U-003", "A"))
        for p, r, q in (("A-1", "A", 1.0), ("C-1", "A", 2.0), ("C-2", c2, 1.0), ("P-1", "A", 1.0))
    ]


def test_unit_configuration(worked):
    got = rows(worked, "select serial_number, part_number, revision, quantity, changed_by from thread.unit_configuration")
    expected = [
        (s, p, r, q, by)
        for s, c2, by2 in (("U-001", "B", "S-1"), ("U-002", "B", "mes"), ("U-003", "A", "mes"))
        for p, r, q, by in (("A-1", "A", 1.0, "mes"), ("C-1", "A", 2.0, "mes"), ("C-2", c2, 1.0, by2),
                            ("P-1", "A", 1.0, "mes"))
    ]
    assert got == sorted(expected)
    assert rows(worked, "select strftime(valid_from, '%Y-%m-%d') from thread.unit_configuration "
                        "where serial_number = 'U-001' and part_number = 'C-2'") == [("2026-03-01",)]


def test_configuration_history_of_the_retrofit(worked):
    got = rows(worked, "select revision, strftime(valid_to, '%Y-%m-%d'), changed_by from thread.unit_configuration_history "
                       "where serial_number = 'U-001' and part_number = 'C-2'")
    assert got == [("A", "2026-03-01", "mes"), ("B", None, "S-1")]


def test_unit_as_designed(worked):
    got = rows(worked, "select serial_number, revision from thread.unit_as_designed where part_number = 'C-2'")
    assert got == [("U-001", "A"), ("U-002", "B"), ("U-003", "B")]
    assert rows(worked, "select part_number, revision, quantity from thread.unit_as_designed where serial_number = 'U-002'") == [
        ("A-1", "A", 1.0), ("C-1", "A", 2.0), ("C-2", "B", 1.0), ("P-1", "A", 1.0)]


def test_unit_deviations(worked):
    assert rows(worked, "select serial_number, part_number, designed_revision, built_revision, deviation_type "
                        "from thread.unit_deviations") == [("U-003", "C-2", "B", "A", "revision_mismatch")]


def test_eco_impact(worked):
    assert rows(worked, "select serial_number, impact from thread.eco_impact where eco_number = 'ECO-1'") == [
        ("U-001", "retrofitted"), ("U-002", "effective"), ("U-003", "effective_not_built")]


def test_eco_propagation(worked):
    assert rows(worked, "select eco_number, missing_systems, status, mes_adopted_at from thread.eco_propagation") == [
        ("ECO-1", "erp,mes,service", "gap", None)]


def test_before_the_retrofit_u001_was_pending(tmp_path):
    sources = write_sources(tmp_path / "sources", example(with_retrofit=False))
    result = build(sources, tmp_path / "data")
    assert result.ok, result.failed
    wh = tmp_path / "data" / "warehouse.duckdb"
    assert rows(wh, "select serial_number, impact from thread.eco_impact") == [
        ("U-001", "retrofit_pending"), ("U-002", "effective"), ("U-003", "effective_not_built")]
    assert rows(wh, "select serial_number, pending_retrofits from twin.unit_twin") == [
        ("U-001", 1), ("U-002", 0), ("U-003", 0)]
