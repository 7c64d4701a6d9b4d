"""Fixtures for the fault tests: `thread build` as a real process on a tiny enterprise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestration.simulate import simulate
from tests.helpers import TINY, build_ok


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "sources"
    simulate(out, TINY)
    return out


@pytest.fixture(scope="session")
def tiny_built(tiny_sources, tmp_path_factory):
    """The tiny enterprise after one `thread build`, and what that build printed. Tests start from
    a copy (`start_from`) rather than each paying for the same first build. dbt logs every SQL
    statement (not the default): the secrets test looks for secrets there too."""
    root = tmp_path_factory.mktemp("tiny-built")
    sources, data = root / "sources", root / "data"
    shutil.copytree(tiny_sources, sources)
    done = build_ok(sources, data, THREAD_DBT_LOG_LEVEL="debug")
    return sources, data, done.stdout + done.stderr

