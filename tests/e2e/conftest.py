"""Fixtures for the end-to-end tests: a real `thread serve` on 127.0.0.1, started and stopped here."""

from __future__ import annotations

import os
import subprocess

import pytest

from orchestration.simulate import simulate
from tests.helpers import SMALL, THREAD, copy_built, start_server, stop_server


@pytest.fixture(scope="module")
def served(built_small, small_sources, tmp_path_factory):
    # A copy: the server's sensors and automation may write to what it serves.
    root = tmp_path_factory.mktemp("serve")
    sources, data = copy_built(small_sources, built_small, root / "copy")
    server = start_server(sources, data, root)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def built_with_history(tmp_path_factory):
    """A small enterprise built by `thread build` into the Dagster instance the UI will show."""
    root = tmp_path_factory.mktemp("ui")
    sources, data = root / "sources", root / "data"
    simulate(sources, SMALL)
    env = {**os.environ, "THREAD_SOURCES_DIR": str(sources), "THREAD_DATA_DIR": str(data),
           "MES_DATABASE_URL": "", "THREAD_PII_SALT": "test-salt"}
    env.pop("DAGSTER_HOME", None)
    subprocess.run([THREAD, "build"], env=env, check=True, capture_output=True)
    subprocess.run([THREAD, "report"], env=env, check=True, capture_output=True)
    return root, sources, data
