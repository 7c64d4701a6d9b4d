"""`thread docs`: the dbt docs site, generated from the build and served on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import urllib.request

from orchestration.docs import generate, make_server
from tests.e2e.conftest import free_port


def test_docs_describe_every_thread_column_and_are_served(built_small):
    site = generate(built_small)
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

    server = make_server(site, free_port())
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/index.html", timeout=10) as r:
            assert r.status == 200 and b"dbt" in r.read()
    finally:
        server.shutdown()
        server.server_close()
