"""Twins as Asset Administration Shells (AAS v3.0), built with aas-core3.0 (the AAS metamodel's
reference SDK from aas-core-works, the same model IDTA's checker uses) and written as JSON, or as an
AASX package through Eclipse BaSyx's packaging (basyx-python-sdk).

Per unit: a shell whose specific asset id is the serial number, and three submodels:
- Identification: the unit's own facts (product, revision, line, work order, dates, site). It
  claims no IDTA template: the Digital Nameplate's mandatory elements (manufacturer name and
  contact, product URI, year of construction) are not in the thread.
- BillOfMaterial: IDTA Hierarchical Structures enabling Bills of Material (02011-1-0), archetype
  Full: the unit's as-built structure (thread.unit_as_built_tree) as nested nodes, each with the
  revisions it holds now (twin.unit_components); a part fitted by service outside that structure
  hangs under the entry node.
- OperationalData: health, worst sensor, remaining useful life, and each sensor's state.

aas-core3.0 rather than basyx for the objects: it builds and serializes a 1,000-part bill of
material in tens of milliseconds where basyx took half a second, which `thread api` answers with.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterable
from datetime import date, datetime, timezone
from pathlib import Path

BASE = "urn:digital-thread"
HS = "https://admin-shell.io/idta/HierarchicalStructures"
HS_SUBMODEL = f"{HS}/1/0/Submodel"
OPERATIONAL = f"{BASE}:semantics:OperationalData:1:0"
IDENTIFICATION = f"{BASE}:semantics:UnitIdentification:1:0"


class UnknownSerial(LookupError):
    pass


def _id_short(text: str) -> str:
    """AAS idShort: starts with a letter, then letters, digits and underscores."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return cleaned if cleaned[:1].isalpha() else f"X{cleaned}"


# `_id_short(serial_number)` in DuckDB's SQL, to filter shells by idShort in the warehouse.
ID_SHORT_SQL = ("(CASE WHEN regexp_matches(serial_number, '^[A-Za-z]') THEN '' ELSE 'X' END"
                " || regexp_replace(serial_number, '[^A-Za-z0-9_]', '_', 'g'))")


def _semantic(value: str):
    import aas_core3.types as aas_types

    return aas_types.Reference(aas_types.ReferenceTypes.EXTERNAL_REFERENCE,
                               [aas_types.Key(aas_types.KeyTypes.GLOBAL_REFERENCE, value)])


def _model_reference(*keys: tuple[str, str]):
    """A ModelReference from (key type, value) pairs, outermost first."""
    import aas_core3.types as aas_types

    return aas_types.Reference(aas_types.ReferenceTypes.MODEL_REFERENCE,
                               [aas_types.Key(aas_types.KeyTypes[kind], value) for kind, value in keys])


def _double(value: float) -> str:
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("INF" if value > 0 else "-INF")


def _prop(id_short: str, value, semantic: str | None = None):
    """A Property typed by its value, in the XSD lexical form (xs:string for None: an empty value,
    still declared)."""
    import aas_core3.types as aas_types

    xsd = aas_types.DataTypeDefXSD
    if isinstance(value, datetime):
        value_type, text = xsd.DATE_TIME, value.astimezone(timezone.utc).isoformat()
    elif isinstance(value, date):
        value_type, text = xsd.DATE, value.isoformat()
    elif isinstance(value, bool):
        value_type, text = xsd.BOOLEAN, "true" if value else "false"
    elif isinstance(value, float):
        value_type, text = xsd.DOUBLE, _double(value)
    elif isinstance(value, int):
        value_type, text = xsd.LONG, str(value)
    else:
        value_type, text = xsd.STRING, None if value is None else str(value)
    return aas_types.Property(value_type, id_short=id_short, value=text,
                              semantic_id=_semantic(semantic) if semantic else None)


def _rows(con, sql: str, params) -> list[dict]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def serials(warehouse: Path) -> list[str]:
    """Every unit with a published twin."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return [s for (s,) in con.execute("SELECT serial_number FROM twin.unit_twin ORDER BY 1").fetchall()]
    finally:
        con.close()


# What a shell is made of, per unit: table -> query over the units in the list parameter `$units`.
# A filter on a list (not a join with a registered table) reaches DuckDB's zone maps: one unit's
# tree at 100,000 units, 8 ms against 19 ms.
_UNITS = "serial_number IN (SELECT unnest($units))"
SOURCES = {
    "twin": f"SELECT * FROM twin.unit_twin WHERE {_UNITS}",
    "unit": f"SELECT * FROM thread.units WHERE {_UNITS}",
    "sensors": f"SELECT * FROM twin.unit_sensor_state WHERE {_UNITS} ORDER BY sensor",
    "tree": f"""SELECT serial_number, parent_part_number, find_number, part_number, revision, quantity_per_parent,
                      built_quantity
               FROM thread.unit_as_built_tree WHERE {_UNITS}
               ORDER BY parent_part_number, find_number, part_number, revision""",
    "held": f"""SELECT c.serial_number, c.part_number, c.revision, c.quantity, p.name
               FROM twin.unit_components c LEFT JOIN thread.parts p USING (part_number)
               WHERE c.{_UNITS} ORDER BY c.part_number, c.revision""",
}
# The submodels of every shell, in the order a shell lists them, and the sources each one reads.
SUBMODELS = {
    "Identification": ("twin", "unit"),
    "BillOfMaterial": ("twin", "tree", "held"),
    "OperationalData": ("twin", "sensors"),
}
# Units read from the warehouse at a time when exporting many.
BATCH_UNITS = 200


def aas_id(serial: str) -> str:
    return f"{BASE}:aas:{serial}"


def global_asset_id(serial: str) -> str:
    return f"{BASE}:asset:{serial}"


def submodel_id(kind: str, serial: str) -> str:
    return f"{BASE}:sm:{kind.lower()}:{serial}"


def serial_of_shell(identifier: str) -> str | None:
    prefix = f"{BASE}:aas:"
    return identifier[len(prefix):] or None if identifier.startswith(prefix) else None


def serial_of_asset(identifier: str) -> str | None:
    prefix = f"{BASE}:asset:"
    return identifier[len(prefix):] or None if identifier.startswith(prefix) else None


def parse_submodel_id(identifier: str) -> tuple[str, str] | None:
    """(kind, serial) of one of our submodel ids, None for any other id."""
    for kind in SUBMODELS:
        prefix = f"{BASE}:sm:{kind.lower()}:"
        if identifier.startswith(prefix) and len(identifier) > len(prefix):
            return kind, identifier[len(prefix):]
    return None


def load(con, units: list[str], sources) -> dict[str, dict[str, list[dict]]]:
    """Rows of the given SOURCES for `units`, per source and serial; `con` in UTC."""
    rows = {name: {} for name in sources}
    for name in sources:
        for r in _rows(con, SOURCES[name], {"units": list(units)}):
            rows[name].setdefault(r["serial_number"], []).append(r)
    return rows


def shells(warehouse: Path, units: Iterable[str]) -> list:
    """The shell and submodels of each unit, as aas-core3.0 objects."""
    import duckdb

    units = list(units)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        out = []
        for i in range(0, len(units), BATCH_UNITS):
            batch = units[i:i + BATCH_UNITS]
            rows = load(con, batch, SOURCES)
            for serial in batch:
                if serial not in rows["twin"]:
                    known = _rows(con, "SELECT status FROM thread.units WHERE serial_number = ?", [serial])
                    why = f"it is {known[0]['status']} (no twin)" if known else "no such unit in the thread"
                    raise UnknownSerial(f"No twin for serial {serial!r}: {why}.")
                mine = {name: rows[name].get(serial, []) for name in SOURCES}
                out += [shell(serial, mine["unit"][0]["product_part_number"]),
                        *(submodel(kind, serial, mine) for kind in SUBMODELS)]
        return out
    finally:
        con.close()


def shell(serial: str, product: str):
    """The unit's shell: its asset (the serial as specific asset id, the product part number as asset
    type) and references to its submodels."""
    import aas_core3.types as aas_types

    return aas_types.AssetAdministrationShell(
        aas_id(serial),
        aas_types.AssetInformation(aas_types.AssetKind.INSTANCE, global_asset_id=global_asset_id(serial),
                                   specific_asset_ids=[aas_types.SpecificAssetID("serialNumber", serial)],
                                   asset_type=product),
        id_short=_id_short(serial),
        submodels=[_model_reference(("SUBMODEL", submodel_id(kind, serial))) for kind in SUBMODELS])


def submodel(kind: str, serial: str, rows: dict[str, list[dict]]):
    """One of the unit's submodels (a key of SUBMODELS), from the rows of the sources it reads."""
    import aas_core3.types as aas_types

    sid = submodel_id(kind, serial)
    if kind == "BillOfMaterial":
        return _bill_of_material(rows["tree"], rows["held"], rows["twin"][0]["product_part_number"], sid,
                                 global_asset_id(serial))
    twin = rows["twin"][0]
    if kind == "Identification":
        unit = rows["unit"][0]
        return aas_types.Submodel(sid, id_short=kind, semantic_id=_semantic(IDENTIFICATION), submodel_elements=[
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
            _prop("StaleReason", twin["stale_reason"]),
        ])
    return aas_types.Submodel(sid, id_short=kind, semantic_id=_semantic(OPERATIONAL), submodel_elements=[
        _prop("HealthState", twin["health_state"]),
        _prop("WorstSensor", twin["worst_sensor"]),
        _prop("LastTelemetryAt", twin["last_telemetry_at"]),
        _prop("RemainingUsefulLifeHours", None if twin["rul_hours"] is None else float(twin["rul_hours"])),
        _prop("RulModelVersion", twin["rul_model_version"]),
        _prop("PendingRetrofits", int(twin["pending_retrofits"])),
        _prop("OpenServiceEvents", int(twin["open_service_events"])),
        *(aas_types.SubmodelElementCollection(id_short=_id_short(s["sensor"]), value=[
            _prop("LastValue", s["last_value"]), _prop("LastTimestamp", s["last_ts"]),
            _prop("Mean24h", s["mean_24h"]), _prop("Max24h", s["max_24h"]),
            _prop("WarningHigh", s["warning_high"]), _prop("CriticalHigh", s["critical_high"]),
            _prop("State", s["state"]),
        ]) for s in rows["sensors"]),
    ])


def _bill_of_material(edges: list[dict], components: list[dict], product: str, submodel_id: str, asset_id: str):
    """IDTA Hierarchical Structures, archetype Full: every node holds its own children and the
    HasPart relations to them."""
    import aas_core3.types as aas_types

    held: dict[str, list[tuple[str, float]]] = {}
    for r in components:
        held.setdefault(r["part_number"], []).append((r["revision"], float(r["quantity"])))
    names = {r["part_number"]: r["name"] for r in components}
    children: dict[str, list[dict]] = {}
    for e in edges:
        children.setdefault(e["parent_part_number"], []).append(e)

    def now(part: str) -> str:
        return ", ".join(f"{rev or '?'}×{qty:g}" for rev, qty in held.get(part, [])) or "none"

    def kids(part: str, path: tuple[str, ...], keys: tuple) -> list:
        """The child nodes of `part` (at `keys` in the submodel), and HasPart to each of them."""
        nodes = [node(edge, (*path, part), keys) for edge in children.get(part, [])] if part not in path else []
        # (a structure never contains itself: a bad BOM stops here)
        relations = [aas_types.RelationshipElement(
            _model_reference(*keys), _model_reference(*keys, ("ENTITY", n.id_short)),
            id_short=_id_short(f"HasPart_{n.id_short}"), semantic_id=_semantic(f"{HS}/HasPart/1/0")) for n in nodes]
        return nodes + relations

    def node(edge: dict, path: tuple[str, ...], parent_keys: tuple):
        part = edge["part_number"]
        id_short = _id_short(f"{part}_{edge['find_number'] or 0}_{edge['revision'] or 'x'}")
        keys = (*parent_keys, ("ENTITY", id_short))
        return aas_types.Entity(
            aas_types.EntityType.CO_MANAGED_ENTITY, id_short=id_short, semantic_id=_semantic(f"{HS}/Node/1/0"),
            description=[aas_types.LangStringTextType(
                "en", f"{names.get(part) or part}, find number {edge['find_number']}")],
            statements=[_prop("PartNumber", part), _prop("RevisionBuilt", edge["revision"]),
                        _prop("BulkCount", float(edge["built_quantity"]), f"{HS}/BulkCount/1/0"),
                        _prop("QuantityPerParent", float(edge["quantity_per_parent"])),
                        _prop("HeldNow", now(part)), *kids(part, path, keys)])

    root = (("SUBMODEL", submodel_id), ("ENTITY", "EntryNode"))
    statements = [_prop("PartNumber", product), _prop("HeldNow", now(product)), *kids(product, (), root)]
    in_structure = {e["part_number"] for e in edges} | {product}
    outside = [node({"part_number": part, "find_number": None, "revision": None, "built_quantity": 0.0,
                     "quantity_per_parent": 0.0}, (product,), root)
               for part in sorted(set(held) - in_structure)]  # fitted by service outside the built structure
    statements += outside + [aas_types.RelationshipElement(
        _model_reference(*root), _model_reference(*root, ("ENTITY", n.id_short)),
        id_short=_id_short(f"HasPart_{n.id_short}"), semantic_id=_semantic(f"{HS}/HasPart/1/0")) for n in outside]
    entry = aas_types.Entity(aas_types.EntityType.SELF_MANAGED_ENTITY, id_short="EntryNode", global_asset_id=asset_id,
                             semantic_id=_semantic(f"{HS}/EntryNode/1/0"), statements=statements)
    return aas_types.Submodel(submodel_id, id_short="BillOfMaterial", semantic_id=_semantic(HS_SUBMODEL),
                              submodel_elements=[_prop("ArcheType", "Full", f"{HS}/ArcheType/1/0"), entry])


def jsonable(obj) -> dict:
    """An AAS object as its JSON value (AAS Part 2's JSON serialization)."""
    from aas_core3 import jsonization

    return jsonization.to_jsonable(obj)


def environment_json(objects: list) -> str:
    """Shells and submodels as one AAS environment, JSON text."""
    import aas_core3.types as aas_types

    shells = [o for o in objects if isinstance(o, aas_types.AssetAdministrationShell)]
    submodels = [o for o in objects if isinstance(o, aas_types.Submodel)]
    # Empty lists are left out: the schema forbids an empty array.
    return json.dumps(jsonable(aas_types.Environment(shells or None, submodels or None)), ensure_ascii=False)


def document(warehouse: Path, serial: str) -> str:
    """The unit's shell as AAS v3 JSON text."""
    return environment_json(shells(warehouse, [serial]))


def _write_aasx(path: Path, objects: list) -> None:
    """An AASX package with the environment as its one JSON part, packaged by basyx: its reader takes
    our JSON (a second library reading what we wrote) and its writer lays out the package. The part
    is our JSON as written, not basyx's re-encoding: basyx 2.2 writes an empty `specificAssetIds`
    for every entity, which the AAS 3.0 schema forbids."""
    from unittest import mock

    from basyx.aas import model
    from basyx.aas.adapter import aasx
    from basyx.aas.adapter.json import read_aas_json_file

    text = environment_json(objects)
    store = read_aas_json_file(io.StringIO(text), failsafe=False)

    def write_part(file, data, **_) -> None:
        wanted = {o.id for o in data}
        file.write(environment_json([o for o in objects if o.id in wanted]))
        file.flush()

    # The package writer calls basyx's JSON writer by name, hence the patch for this call.
    with mock.patch.object(aasx, "write_aas_json_file", write_part), aasx.AASXWriter(str(path)) as writer:
        writer.write_aas([o.id for o in store if isinstance(o, model.AssetAdministrationShell)], store,
                         aasx.DictSupplementaryFileContainer(), write_json=True)


def export(warehouse: Path, units: str | Iterable[str], out: Path, fmt: str | None = None) -> list[Path]:
    """Write the shells of `units` (a serial, or several): to a .json or .aasx file (every unit in
    it), or to a folder with one file per unit. `fmt` (json, aasx): the format of a folder's files;
    a file's comes from its suffix."""
    units = [units] if isinstance(units, str) else list(units)
    out = Path(out)
    if out.suffix.lower() in (".json", ".aasx"):
        targets = [(out, units)]
    else:
        fmt = (fmt or "json").lower()
        targets = [(out / f"{serial}.{fmt}", [serial]) for serial in units]
    written = []
    for path, group in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        objects = shells(warehouse, group)
        if path.suffix.lower() == ".aasx":
            _write_aasx(path, objects)
        else:
            path.write_text(environment_json(objects), encoding="utf-8")
        written.append(path)
    return written
