"""A sensor-triggered refresh while a manual `thread build` runs: the runs serialize.

Every run that writes holds the writer lock (orchestration.resources.WriterLock) from start to end,
so the sensor's run waits while the manual build is inside its dbt run, then goes ahead. Nothing
is torn or doubled, and the result equals a build from scratch on the same sources.
"""

from __future__ import annotations

import shutil
import threading
import time

import dagster as dg
import pytest

from orchestration.definitions import SENSORS
from orchestration.settings import ThreadSettings
from tests.helpers import (
    SALT,
    build_ok,
    published,
    raw_counts,
    read_every_delta_table,
    release_eco,
    start_from,
    start_paused,
    thread_env,
)

pytestmark = pytest.mark.slow


def test_a_sensor_refresh_waits_for_a_manual_build_and_nothing_is_corrupted(tiny_built, tmp_path, monkeypatch):
    sources, data = start_from(tiny_built, tmp_path)
    thread_env(monkeypatch, sources, data)
    monkeypatch.setenv("THREAD_PII_SALT", SALT)
    from orchestration.definitions import defs

    settings = ThreadSettings(sources_dir=str(sources), data_dir=str(data))
    with dg.DagsterInstance.ephemeral() as instance:
        def tick():
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"thread": settings})
            return SENSORS["plm"](ctx), ctx.cursor

        cursor = None
        _, cursor = tick()  # the sensor's first look sets its cursor

        release_eco(sources, 3, 1, "retrofit")
        marker = tmp_path / "paused"
        manual = start_paused("dbt-run", sources, data, marker)  # landed ECO-7701, now inside dbt
        release_eco(sources, 5, 2, "none")  # engineering releases another while the build runs
        request, cursor = tick()
        assert isinstance(request, dg.RunRequest), request

        outcome = {}

        def sensor_run():
            started = time.monotonic()
            outcome["result"] = dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
                                               selection=request.asset_selection, raise_on_error=False,
                                               tags=request.tags)
            outcome["seconds"] = time.monotonic() - started

        worker = threading.Thread(target=sensor_run)
        worker.start()
        time.sleep(5)
        assert worker.is_alive(), "the sensor's run did not wait for the manual build"
        marker.unlink()  # the manual build carries on
        out, _ = manual.communicate(timeout=600)
        worker.join(timeout=600)

    assert manual.returncode == 0, out[-3000:]
    assert outcome["result"].success and outcome["seconds"] >= 5
    read_every_delta_table(data / "lake")
    counts = raw_counts(data / "lake")
    assert all(rows == keys for name, (rows, keys) in counts.items() if name.startswith("raw/")), counts

    build_ok(sources, data)
    scratch_sources, scratch = tmp_path / "scratch_sources", tmp_path / "scratch"
    shutil.copytree(sources, scratch_sources)
    build_ok(scratch_sources, scratch)
    assert published(data / "warehouse.duckdb") == published(scratch / "warehouse.duckdb")
    ecos = {r[0] for r in published(data / "warehouse.duckdb")["thread.ecos"]}
    assert {"ECO-7701", "ECO-7702"} <= ecos
