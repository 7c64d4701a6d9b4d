"""`thread docs`: the dbt docs site, generated from the build and served on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import psutil

from orchestration.docs import generate, serve_command
from orchestration.settings import ThreadSettings
from tests.helpers import free_port


def test_docs_describe_every_thread_column_and_are_served(built_small, small_sources):
    settings = ThreadSettings(sources_dir=str(small_sources), data_dir=str(built_small))
    site = generate(settings)
    manifest = json.loads((site / "manifest.json").read_text())
    catalog = json.loads((site / "catalog.json").read_text())
    marts = [n for n in manifest["nodes"].values()
             if n["resource_type"] == "model" and n["schema"] in ("thread", "twin_logic")]
    names = {n["name"] for n in marts}
    spec = {"parts", "part_revisions", "units", "unit_as_designed", "unit_as_built", "unit_deviations",
            "unit_configuration_history", "unit_configuration", "eco_propagation", "eco_impact",
            "part_field_reliability", "customers", "contract_violations",
            "unit_twin", "unit_components", "unit_sensor_state"}
    assert spec <= names
    for node in marts:
        assert node["description"], node["name"]
        built = catalog["nodes"][node["unique_id"]]["columns"]
        for column in built:
            assert node["columns"].get(column, {}).get("description"), f"{node['name']}.{column} has no description"

    port = free_port()
    server = subprocess.Popen(serve_command(settings, port), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True, preexec_fn=_stoppable)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
                    assert r.status == 200 and b"dbt" in r.read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "dbt docs serve did not answer"
                time.sleep(0.5)
        listening = [c.laddr for c in psutil.Process(server.pid).net_connections() if c.status == "LISTEN"]
        assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _stoppable() -> None:
    # A test run started in the background (`cmd &`) hands its children SIGTERM and SIGINT ignored;
    # dbt keeps what it inherits, so the server would outlive its stop.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
