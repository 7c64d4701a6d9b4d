"""`thread api`: the twins as an AAS repository (checked by IDTA's aas-test-engines) and twin
changes as Server-Sent Events, in order, resumable without loss; both answer while a build publishes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
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


# -- the AAS repository ----------------------------------------------------------------------------

SSP = "https://admin-shell.io/aas/API/3/0/"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _get(url: str, path: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _failures(result, depth: int = 0) -> list[str]:
    if result.ok():
        return []
    return ["  " * depth + result.message] + [line for sub in result.sub_results for line in _failures(sub, depth + 1)]


@pytest.mark.parametrize("profile", ["AssetAdministrationShellRepositoryServiceSpecification/SSP-002",
                                     "SubmodelRepositoryServiceSpecification/SSP-002"])
def test_the_twins_pass_the_official_aas_api_check_for_each_read_profile_claimed(api, profile):
    from aas_test_engines.api import execute_tests
    from aas_test_engines.config import CheckApiConfig
    from aas_test_engines.http import HttpClient

    url, _, _ = api
    assert _get(url, "/description")[1]["profiles"].count(SSP + profile) == 1
    result, matrix = execute_tests(HttpClient(url), CheckApiConfig(suite=SSP + profile))
    assert result.ok(), "\n".join(_failures(result))
    # Malformed requests (bad ids, negative limits, unknown enum values) were refused, every valid one answered.
    assert matrix.invalid_accepted == 0 and matrix.valid_rejected == 0
    assert matrix.invalid_rejected > 20 and matrix.valid_accepted > 50


def test_shells_page_through_the_fleet_and_a_unit_is_found_by_its_serial(api):
    url, _, data = api
    twins = [s for (s,) in query(data / "warehouse.duckdb", "select serial_number from twin.unit_twin order by 1")]
    seen, cursor = [], None
    while True:
        status, page = _get(url, "/shells?limit=7" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200 and len(page["result"]) <= 7
        seen += [s["assetInformation"]["specificAssetIds"][0]["value"] for s in page["result"]]
        cursor = page["paging_metadata"].get("cursor")
        if not cursor:
            break
    assert seen == twins  # every twin once, in serial order

    serial = twins[len(twins) // 2]
    by_serial = _b64(json.dumps({"name": "serialNumber", "value": serial}))
    status, found = _get(url, f"/shells?assetIds={by_serial}")
    assert status == 200 and [s["id"] for s in found["result"]] == [f"urn:digital-thread:aas:{serial}"]
    assert _get(url, f"/lookup/shells?assetIds={by_serial}")[1]["result"] == [f"urn:digital-thread:aas:{serial}"]
    nobody = _b64(json.dumps({"name": "serialNumber", "value": "NO-SUCH-UNIT"}))
    assert _get(url, f"/shells?assetIds={nobody}") == (200, {"paging_metadata": {}, "result": []})
    status, shell = _get(url, f"/shells/{_b64(found['result'][0]['id'])}")
    assert status == 200 and shell == found["result"][0]

    status, error = _get(url, f"/shells/{_b64('urn:digital-thread:aas:NO-SUCH-UNIT')}")
    assert status == 404 and "NO-SUCH-UNIT" in error["messages"][0]["text"]
    assert error["messages"][0]["messageType"] == "Error" and error["messages"][0]["code"] == "404"
    assert _get(url, "/shells?limit=0")[0] == 400
    assert _get(url, "/shells/not-base64!")[0] == 400


def test_submodels_read_by_id_and_path_are_the_published_twin(api):
    url, _, data = api
    [(serial, health, pending, rul)] = query(
        data / "warehouse.duckdb", "select serial_number, health_state, pending_retrofits, rul_hours "
        "from twin.unit_twin order by pending_retrofits desc, serial_number limit 1")
    sm = _b64(f"urn:digital-thread:sm:operationaldata:{serial}")
    status, value = _get(url, f"/submodels/{sm}/$value")
    assert status == 200
    assert (value["HealthState"], value["PendingRetrofits"]) == (health, pending)
    assert value["RemainingUsefulLifeHours"] == (None if rul is None else pytest.approx(float(rul)))
    assert _get(url, f"/submodels/{sm}/submodel-elements/HealthState/$value")[1] == {"HealthState": health}
    # The same submodel through its shell; another unit's submodel is not in this shell.
    shell = _b64(f"urn:digital-thread:aas:{serial}")
    assert _get(url, f"/shells/{shell}/submodels/{sm}")[1] == _get(url, f"/submodels/{sm}")[1]
    other = [s for (s,) in query(data / "warehouse.duckdb", "select serial_number from twin.unit_twin "
                                 "where serial_number <> ? limit 1", [serial])][0]
    assert _get(url, f"/shells/{_b64(f'urn:digital-thread:aas:{other}')}/submodels/{sm}")[0] == 404

    # The bill of material is a hierarchy: paths go down through the entry node's statements, and
    # every part the unit holds now is a node in it.
    bom = _b64(f"urn:digital-thread:sm:billofmaterial:{serial}")
    status, paths = _get(url, f"/submodels/{bom}/submodel-elements/EntryNode/$path")
    assert status == 200 and paths[0] == "EntryNode" and any(p.count(".") >= 3 for p in paths)
    deepest = max(paths, key=lambda p: p.count("."))
    status, node = _get(url, f"/submodels/{bom}/submodel-elements/{deepest}")
    assert status == 200 and node["idShort"] == deepest.rsplit(".", 1)[1]
    status, ref = _get(url, f"/submodels/{bom}/submodel-elements/{deepest}/$reference")
    assert [k["value"] for k in ref["keys"]] == [f"urn:digital-thread:sm:billofmaterial:{serial}",
                                                  *deepest.split(".")]
    held = {p for (p,) in query(data / "warehouse.duckdb", "select distinct part_number from twin.unit_components "
                                "where serial_number = ?", [serial])}
    _, whole = _get(url, f"/submodels/{bom}/$value")

    def parts(value: dict) -> set[str]:
        out = {value["statements"]["PartNumber"]} if "PartNumber" in value.get("statements", {}) else set()
        for child in value.get("statements", {}).values():
            if isinstance(child, dict) and "statements" in child:
                out |= parts(child)
        return out

    assert held <= parts(whole["EntryNode"])
    assert _get(url, f"/submodels/{bom}/submodel-elements/EntryNode.NoSuchPart")[0] == 404
    assert _get(url, f"/submodels/{bom}/submodel-elements/EntryNode/$path?level=sideways")[0] == 400


def test_an_eco_reaches_a_subscriber_as_events_of_the_units_it_affects(api):
    url, sources, data = api
    [(last,)] = query(data / "warehouse.duckdb", "select max(event_id) from twin.twin_change_events")
    # Subscribed before the change: only what happens from now on.
    from_now = _connect(url, query_string="?after=now", timeout=600)
    release_eco(sources, 0, 1, "retrofit")
    # An application reads twins all through the build and its publish: every answer is whole.
    [(serial, twins)] = query(data / "warehouse.duckdb", "select min(serial_number), count(*) from twin.unit_twin")
    reads, stop = [], threading.Event()

    def read_while_publishing():
        sm = _b64(f"urn:digital-thread:sm:identification:{serial}")
        while not stop.is_set():
            shells, submodel = _get(url, "/shells?limit=100"), _get(url, f"/submodels/{sm}/$value")
            reads.append((shells[0], len(shells[1]["result"]), submodel[0], submodel[1].get("SerialNumber")))
            time.sleep(0.05)

    before = {s: _get(url, f"/submodels/{_b64(f'urn:digital-thread:sm:operationaldata:{s}')}/$value")[1]
              ["PendingRetrofits"] for (s,) in query(data / "warehouse.duckdb", "select serial_number from twin.unit_twin")}
    reader = threading.Thread(target=read_while_publishing)
    reader.start()
    try:
        done = thread(["build"], sources, data)
    finally:
        stop.set()
        reader.join()
    assert len(reads) > 20
    assert set(reads) == {(200, min(twins, 100), 200, serial)}
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    affected = {s for (s,) in query(data / "warehouse.duckdb", "select serial_number from thread.eco_impact "
                                     "where eco_number = 'ECO-7701' and impact = 'retrofit_pending'")}
    assert affected
    # What the API serves after the publish is the new warehouse, for every affected unit.
    for one in affected:
        [(pending,)] = query(data / "warehouse.duckdb", "select pending_retrofits from twin.unit_twin "
                             "where serial_number = ?", [one])
        sm = _b64(f"urn:digital-thread:sm:operationaldata:{one}")
        assert _get(url, f"/submodels/{sm}/submodel-elements/PendingRetrofits/$value") == \
            (200, {"PendingRetrofits": pending}), one
        assert before[one] < pending, one
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
