"""Process-level defaults for the `thread` command: where data lives when nothing is set.

Only the CLI calls this, at run time; definitions read configuration through resources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .resources import DEMO_PII_SALT

DAGSTER_YAML = """\
# Written by `thread`; everything Dagster stores lives under THREAD_DATA_DIR.
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    # Launch queued runs within a second: a change should reach the twins in under a minute.
    dequeue_interval_seconds: 1
    dequeue_use_threads: true
# Runs that write take the writer lock (resources.LakeLock) for their whole duration, so they
# serialize with each other and with `thread build`; a killed run's lock dies with its process.
concurrency:
  runs:
    max_concurrent_runs: 3
"""


@dataclass(frozen=True)
class Environment:
    data_dir: Path
    sources_dir: Path
    mes_database_url: str
    dagster_home: Path


def configure(data_dir: str | None = None, sources_dir: str | None = None) -> Environment:
    """Fill in THREAD_* and DAGSTER_HOME defaults (absolute paths) for this process and children."""
    data = Path(data_dir or os.environ.get("THREAD_DATA_DIR") or "data").resolve()
    sources = Path(sources_dir or os.environ.get("THREAD_SOURCES_DIR") or data / "sources").resolve()
    os.environ["THREAD_DATA_DIR"] = str(data)
    os.environ["THREAD_SOURCES_DIR"] = str(sources)
    os.environ.setdefault("MES_DATABASE_URL", "")
    os.environ.setdefault("THREAD_PII_SALT", DEMO_PII_SALT)
    os.environ.setdefault("THREAD_TWIN_UNITS_PER_PARTITION", "1")
    home = Path(os.environ.get("DAGSTER_HOME") or data / "dagster_home").resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return Environment(data, sources, os.environ["MES_DATABASE_URL"], home)
