"""`thread api`: twin changes as Server-Sent Events, in order, resumable without loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import copy_built, env_for, free_port, query, release_eco, thread

THREAD = str(Path(sys.executable).parent / "thread")


@pytest.fixture(scope="module")
def api(small_sources, built_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    sources, data = copy_built(small_sources, built_small, root / "copy")
    port = free_port()
    log = root / "api.log"
    proc = subprocess.Popen([THREAD, "api", "--port", str(port)], env=env_for(sources, data),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError(log.read_text()[-2000:]) from None
            time.sleep(0.3)
    yield url, sources, data
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def _connect(url: str, last_id: str | None = None, query_string: str = "", timeout: float = 120):
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    r = urllib.request.urlopen(urllib.request.Request(f"{url}/events{query_string}", headers=headers), timeout=timeout)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    return r


def _stream(url: str, last_id: str | None = None, query_string: str = "", timeout: float = 120, response=None):
    """The events of one connection, as (id, data), until the caller stops."""
    with response or _connect(url, last_id, query_string, timeout) as r:
        event = {}
        for raw in r:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in event:
                    yield event.get("id"), json.loads(event["data"])
                event = {}
            elif not line.startswith(":") and ":" in line:
                key, value = line.split(":", 1)
                event[key] = value.lstrip(" ")


def _take(stream, n: int) -> list:
    out = []
    for item in stream:
        out.append(item)
        if len(out) == n:
            stream.close()
            break
    return out


def test_a_consumer_that_reconnects_misses_nothing_and_sees_nothing_twice(api):
    url, _, data = api
    every = [i for (i,) in query(data / "warehouse.duckdb", "select event_id from twin.twin_change_events order by 1")]
    assert len(every) >= 60  # a new-twin event per unit at least
    first = _take(_stream(url), 10)
    rest = _take(_stream(url, last_id=first[-1][0]), len(every) - 10)
    assert [i for i, _ in first + rest] == every
    _, event = first[0]
    assert {"serial_number", "changed_at", "changes", "refresh_reasons", "old_configuration_hash",
            "new_configuration_hash"} <= set(event)
    assert event["changes"] == ["new twin"] and event["old_configuration_hash"] is None
    one = every[-1].split("-", 1)[1]
    mine = [e for _, e in _take(_stream(url, query_string=f"?serial={one}"), 1)]
    assert [e["serial_number"] for e in mine] == [one]


def test_an_eco_reaches_a_subscriber_as_events_of_the_units_it_affects(api):
    url, sources, data = api
    [(last,)] = query(data / "warehouse.duckdb", "select max(event_id) from twin.twin_change_events")
    # Subscribed before the change: only what happens from now on.
    from_now = _connect(url, query_string="?after=now", timeout=600)
    release_eco(sources, 0, 1, "retrofit")
    done = thread(["build"], sources, data)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    affected = {s for (s,) in query(data / "warehouse.duckdb", "select serial_number from thread.eco_impact "
                                     "where eco_number = 'ECO-7701' and impact = 'retrofit_pending'")}
    assert affected
    got = {}
    stream = _stream(url, last_id=last)
    for event_id, event in stream:
        got[event["serial_number"]] = event
        if affected <= set(got):
            stream.close()
            break
    for serial in affected:
        assert "eco impact" in got[serial]["changes"], got[serial]
        assert "eco" in got[serial]["refresh_reasons"], got[serial]
    # The subscriber from now saw the same first events, and nothing from before.
    live = _stream(url, response=from_now)
    first = next(live)
    live.close()
    assert first[0] > last and first[1]["serial_number"] in got
