"""A unit's twin as an Asset Administration Shell (AAS v3, JSON serialization).

The shell carries the serial number as its specific asset id and three submodels:
identification, the current configuration as an IDTA Hierarchical Structures (bill of material)
submodel, and the sensor state as operational data. Written by hand from the published
warehouse, so that a reader we did not write (the AAS reference library) can check it.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import duckdb

BASE = "urn:digital-thread"
HIERARCHICAL_STRUCTURES = "https://admin-shell.io/idta/HierarchicalStructures/1/0/Submodel"
NAMEPLATE = "https://admin-shell.io/zvei/nameplate/2/0/Nameplate"
HAS_PART = "https://admin-shell.io/idta/HierarchicalStructures/HasPart/1/0"


class UnknownSerial(LookupError):
    pass


def _id_short(text: str) -> str:
    """AAS idShort: starts with a letter, then letters, digits and underscores."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return cleaned if cleaned[:1].isalpha() else f"X{cleaned}"


def _ref(kind: str, value: str) -> dict:
    return {"type": "ModelReference", "keys": [{"type": kind, "value": value}]}


def _external(value: str) -> dict:
    return {"type": "ExternalReference", "keys": [{"type": "GlobalReference", "value": value}]}


def _prop(id_short: str, value, value_type: str = "xs:string") -> dict:
    if isinstance(value, datetime):
        value, value_type = value.strftime("%Y-%m-%dT%H:%M:%SZ"), "xs:dateTime"
    elif isinstance(value, bool):
        value, value_type = ("true" if value else "false"), "xs:boolean"
    elif isinstance(value, float):
        value, value_type = repr(value), "xs:double"
    elif isinstance(value, int):
        value, value_type = str(value), "xs:long"
    out = {"modelType": "Property", "idShort": id_short, "valueType": value_type}
    if value is not None:
        out["value"] = str(value)
    return out


def _rows(con, sql: str, params) -> list[dict]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def shell(warehouse: Path, serial: str) -> dict:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        twin = _rows(con, "SELECT * FROM twin.unit_twin WHERE serial_number = ?", [serial])
        if not twin:
            known = _rows(con, "SELECT status FROM thread.units WHERE serial_number = ?", [serial])
            why = f"it is {known[0]['status']} (no twin)" if known else "no such unit in the thread"
            raise UnknownSerial(f"No twin for serial {serial!r}: {why}.")
        twin = twin[0]
        unit = _rows(con, "SELECT * FROM thread.units WHERE serial_number = ?", [serial])[0]
        parts = _rows(con, """
            SELECT c.part_number, c.revision, c.quantity, c.since, p.name, p.part_type
            FROM twin.unit_components c LEFT JOIN thread.parts p USING (part_number)
            WHERE c.serial_number = ? ORDER BY c.part_number, c.revision""", [serial])
        sensors = _rows(con, "SELECT * FROM twin.unit_sensor_state WHERE serial_number = ? ORDER BY sensor", [serial])
    finally:
        con.close()

    asset_id = f"{BASE}:asset:{serial}"
    shell_id = f"{BASE}:aas:{serial}"
    sm = {name: f"{BASE}:sm:{name.lower()}:{serial}" for name in ("Identification", "BillOfMaterial", "OperationalData")}

    identification = {
        "modelType": "Submodel", "id": sm["Identification"], "idShort": "Identification", "kind": "Instance",
        "semanticId": _external(NAMEPLATE),
        "submodelElements": [
            _prop("SerialNumber", serial),
            _prop("ProductPartNumber", unit["product_part_number"]),
            _prop("ProductRevision", unit["product_revision"]),
            _prop("Status", unit["status"]),
            _prop("ProductionLine", unit["line_id"]),
            _prop("WorkOrder", unit["work_order_number"]),
            _prop("BuildStarted", unit["build_started_at"]),
            _prop("BuildCompleted", unit["build_completed_at"]),
            _prop("Shipped", unit["shipped_at"]),
            _prop("Site", unit["site"]),
            _prop("ConfigurationHash", twin["configuration_hash"]),
            _prop("RefreshedAt", twin["refreshed_at"]),
            _prop("IsStale", bool(twin["is_stale"])),
        ],
    }
    entry_children, relations = [], []
    for p in parts:
        node = _id_short(f"{p['part_number']}_{p['revision']}")
        entry_children.append({
            "modelType": "Entity", "idShort": node, "entityType": "CoManagedEntity",
            "description": [{"language": "en", "text": f"{p['name'] or p['part_number']} rev {p['revision']}"}],
            "statements": [
                _prop("PartNumber", p["part_number"]), _prop("Revision", p["revision"]),
                _prop("Quantity", float(p["quantity"])), _prop("PartType", p["part_type"]),
                _prop("Since", p["since"]),
            ],
        })
        relations.append({
            "modelType": "RelationshipElement", "idShort": _id_short(f"HasPart_{node}"),
            "semanticId": _external(HAS_PART),
            "first": {"type": "ModelReference", "keys": [
                {"type": "Submodel", "value": sm["BillOfMaterial"]},
                {"type": "Entity", "value": "EntryNode"}]},
            "second": {"type": "ModelReference", "keys": [
                {"type": "Submodel", "value": sm["BillOfMaterial"]},
                {"type": "Entity", "value": "EntryNode"},
                {"type": "Entity", "value": node}]},
        })
    bom = {
        "modelType": "Submodel", "id": sm["BillOfMaterial"], "idShort": "HierarchicalStructures", "kind": "Instance",
        "semanticId": _external(HIERARCHICAL_STRUCTURES),
        "submodelElements": [
            _prop("ArcheType", "OneDown"),
            {"modelType": "Entity", "idShort": "EntryNode", "entityType": "SelfManagedEntity",
             "globalAssetId": asset_id, "statements": entry_children + relations},
        ],
    }
    operational = {
        "modelType": "Submodel", "id": sm["OperationalData"], "idShort": "OperationalData", "kind": "Instance",
        "submodelElements": [
            _prop("HealthState", twin["health_state"]),
            _prop("WorstSensor", twin["worst_sensor"]),
            _prop("LastTelemetryAt", twin["last_telemetry_at"]),
            _prop("PendingRetrofits", int(twin["pending_retrofits"])),
            _prop("OpenServiceEvents", int(twin["open_service_events"])),
        ] + [
            {"modelType": "SubmodelElementCollection", "idShort": _id_short(s["sensor"]), "value": [
                _prop("LastValue", s["last_value"]), _prop("LastTimestamp", s["last_ts"]),
                _prop("Mean24h", s["mean_24h"]), _prop("Max24h", s["max_24h"]),
                _prop("WarningHigh", s["warning_high"]), _prop("CriticalHigh", s["critical_high"]),
                _prop("State", s["state"]),
            ]}
            for s in sensors
        ],
    }
    return {
        "assetAdministrationShells": [{
            "modelType": "AssetAdministrationShell", "id": shell_id, "idShort": _id_short(serial),
            "assetInformation": {
                "assetKind": "Instance", "globalAssetId": asset_id,
                "specificAssetIds": [{"name": "serialNumber", "value": serial}],
                "assetType": unit["product_part_number"],
            },
            "submodels": [_ref("Submodel", sm[k]) for k in ("Identification", "BillOfMaterial", "OperationalData")],
        }],
        "submodels": [identification, bom, operational],
        "conceptDescriptions": [],
    }


def _drop_nulls(obj):
    if isinstance(obj, dict):
        return {k: _drop_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_nulls(v) for v in obj]
    return obj


def document(warehouse: Path, serial: str) -> str:
    """The unit's shell as AAS v3 JSON text."""
    return json.dumps(_drop_nulls(shell(warehouse, serial)), indent=2)


def export(warehouse: Path, serial: str, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document(warehouse, serial))
    return out
