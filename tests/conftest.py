"""Shared fixtures: small enterprises and isolated data directories, always under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration.dbt_project import prepare
from orchestration.simulate import simulate
from tests.helpers import SMALL, build, copy_built

# The files that take longest (pytest --durations), longest first. pytest-xdist gives each worker
# one file at a time in collection order (`make test` turns its own reordering off), so a long
# file collected last would run alone at the end while the other worker idles.
SLOWEST_FIRST = [
    "e2e/test_spark.py", "e2e/test_structural_eco.py", "reliability/test_crash_safety.py", "reliability/test_faults.py",
    "reliability/test_concurrency.py", "reliability/test_incremental_equals_full.py", "e2e/test_ui.py",
    "integration/test_bad_input.py", "e2e/test_serve.py", "e2e/test_api.py", "e2e/test_team.py",
    "integration/test_worked_example.py", "e2e/test_object_store.py", "integration/test_rul.py",
    "reliability/test_outages.py",
]


def pytest_configure(config):
    # The test enterprises are simulated in the first half of 2026: by the wall clock their
    # telemetry has long stopped. Every twin would be `unknown` and stale for its silence, which
    # tests/integration/test_twins.py checks on its own with an explicit limit and time.
    os.environ.setdefault("THREAD_TELEMETRY_SILENCE_HOURS", str(24 * 365 * 20))
    # `make setup` builds the dbt manifest; this covers pytest run directly (a fresh clone, edited
    # models) before any test module imports the definitions, which load it. Once, before the
    # pytest-xdist workers start (they would race on dbt's target directory).
    if not hasattr(config, "workerinput"):
        prepare()


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the other files keep their order


@pytest.fixture(scope="session")
def small_sources(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small") / "sources"
    simulate(out, SMALL)
    return out


@pytest.fixture(scope="session")
def built_small(small_sources, tmp_path_factory):
    """Built once per session and only read; a test that writes takes `built_small_copy`."""
    data = tmp_path_factory.mktemp("built")
    result = build(small_sources, data)
    assert result.ok, result.failed
    return data


@pytest.fixture
def built_small_copy(small_sources, built_small, tmp_path) -> tuple[Path, Path]:
    return copy_built(small_sources, built_small, tmp_path / "copy")
