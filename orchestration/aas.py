"""Twins as Asset Administration Shells (AAS v3.0), built with the AAS reference library
(Eclipse BaSyx's basyx-python-sdk) and written as JSON or as an AASX package.

Per unit: a shell whose specific asset id is the serial number, and three submodels:
- Identification: the unit's own facts (product, revision, line, work order, dates, site). It
  claims no IDTA template: the Digital Nameplate's mandatory elements (manufacturer name and
  contact, product URI, year of construction) are not in the thread.
- BillOfMaterial: IDTA Hierarchical Structures enabling Bills of Material (02011-1-0), archetype
  Full: the unit's as-built structure (thread.unit_as_built_tree) as nested nodes, each with the
  revisions it holds now (twin.unit_components); a part fitted by service outside that structure
  hangs under the entry node.
- OperationalData: health, worst sensor, remaining useful life, and each sensor's state.
"""

from __future__ import annotations

import io
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
    from basyx.aas import model

    return model.ExternalReference((model.Key(model.KeyTypes.GLOBAL_REFERENCE, value),))


def _prop(id_short: str, value, semantic: str | None = None):
    """A Property typed by its value (xs:string for None: an empty value, still declared)."""
    from basyx.aas import model

    if isinstance(value, datetime):
        value_type, value = model.datatypes.DateTime, value.astimezone(timezone.utc)
    elif isinstance(value, date):
        value_type = model.datatypes.Date
    elif isinstance(value, bool):
        value_type = model.datatypes.Boolean
    elif isinstance(value, float):
        value_type = model.datatypes.Double
    elif isinstance(value, int):
        value_type = model.datatypes.Long
    else:
        value_type, value = model.datatypes.String, None if value is None else str(value)
    return model.Property(id_short, value_type=value_type, value=value,
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


# What a shell is made of, per unit: table -> query over the units in temp table `wanted`.
SOURCES = {
    "twin": "SELECT * FROM twin.unit_twin SEMI JOIN wanted USING (serial_number)",
    "unit": "SELECT * FROM thread.units SEMI JOIN wanted USING (serial_number)",
    "sensors": "SELECT * FROM twin.unit_sensor_state SEMI JOIN wanted USING (serial_number) ORDER BY sensor",
    "tree": """SELECT serial_number, parent_part_number, find_number, part_number, revision, quantity_per_parent,
                      built_quantity
               FROM thread.unit_as_built_tree SEMI JOIN wanted USING (serial_number)
               ORDER BY parent_part_number, find_number, part_number, revision""",
    "held": """SELECT c.serial_number, c.part_number, c.revision, c.quantity, p.name
               FROM twin.unit_components c SEMI JOIN wanted USING (serial_number)
               LEFT JOIN thread.parts p USING (part_number) ORDER BY c.part_number, c.revision""",
}
# The submodels of every shell, in the order a shell lists them, and the sources each one reads.
SUBMODELS = {
    "Identification": ("twin", "unit"),
    "BillOfMaterial": ("unit", "tree", "held"),
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
    import pyarrow as pa

    con.register("wanted", pa.table({"serial_number": pa.array(units, pa.string())}))
    try:
        rows = {name: {} for name in sources}
        for name in sources:
            for r in _rows(con, SOURCES[name], []):
                rows[name].setdefault(r["serial_number"], []).append(r)
        return rows
    finally:
        con.unregister("wanted")


def shells(warehouse: Path, units: Iterable[str]) -> list:
    """The shell and submodels of each unit, as basyx objects."""
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
    from basyx.aas import model

    return model.AssetAdministrationShell(
        model.AssetInformation(model.AssetKind.INSTANCE, global_asset_id=global_asset_id(serial),
                               specific_asset_id=[model.SpecificAssetId("serialNumber", serial)],
                               asset_type=product),
        id_=aas_id(serial), id_short=_id_short(serial),
        submodel={model.ModelReference((model.Key(model.KeyTypes.SUBMODEL, submodel_id(kind, serial)),),
                                       model.Submodel) for kind in SUBMODELS})


def submodel(kind: str, serial: str, rows: dict[str, list[dict]]):
    """One of the unit's submodels (a key of SUBMODELS), from the rows of the sources it reads."""
    from basyx.aas import model

    sid = submodel_id(kind, serial)
    if kind == "BillOfMaterial":
        return _bill_of_material(rows["tree"], rows["held"], rows["unit"][0]["product_part_number"], sid,
                                 global_asset_id(serial))
    twin = rows["twin"][0]
    if kind == "Identification":
        unit = rows["unit"][0]
        return model.Submodel(sid, id_short=kind, semantic_id=_semantic(IDENTIFICATION), submodel_element=[
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
    return model.Submodel(sid, id_short=kind, semantic_id=_semantic(OPERATIONAL), submodel_element=[
        _prop("HealthState", twin["health_state"]),
        _prop("WorstSensor", twin["worst_sensor"]),
        _prop("LastTelemetryAt", twin["last_telemetry_at"]),
        _prop("RemainingUsefulLifeHours", None if twin["rul_hours"] is None else float(twin["rul_hours"])),
        _prop("RulModelVersion", twin["rul_model_version"]),
        _prop("PendingRetrofits", int(twin["pending_retrofits"])),
        _prop("OpenServiceEvents", int(twin["open_service_events"])),
        *(model.SubmodelElementCollection(_id_short(s["sensor"]), value=[
            _prop("LastValue", s["last_value"]), _prop("LastTimestamp", s["last_ts"]),
            _prop("Mean24h", s["mean_24h"]), _prop("Max24h", s["max_24h"]),
            _prop("WarningHigh", s["warning_high"]), _prop("CriticalHigh", s["critical_high"]),
            _prop("State", s["state"]),
        ]) for s in rows["sensors"]),
    ])


def _bill_of_material(edges: list[dict], components: list[dict], product: str, submodel_id: str, asset_id: str):
    """IDTA Hierarchical Structures, archetype Full: every node holds its own children and the
    HasPart relations to them."""
    from basyx.aas import model

    held: dict[str, list[tuple[str, float]]] = {}
    for r in components:
        held.setdefault(r["part_number"], []).append((r["revision"], float(r["quantity"])))
    names = {r["part_number"]: r["name"] for r in components}
    children: dict[str, list[dict]] = {}
    for e in edges:
        children.setdefault(e["parent_part_number"], []).append(e)

    def now(part: str) -> str:
        return ", ".join(f"{rev or '?'}×{qty:g}" for rev, qty in held.get(part, [])) or "none"

    def node(edge: dict, path: tuple[str, ...]) -> model.Entity:
        part = edge["part_number"]
        entity = model.Entity(
            _id_short(f"{part}_{edge['find_number'] or 0}_{edge['revision'] or 'x'}"),
            model.EntityType.CO_MANAGED_ENTITY, semantic_id=_semantic(f"{HS}/Node/1/0"),
            description=model.MultiLanguageTextType({"en": f"{names.get(part) or part}, find number "
                                                           f"{edge['find_number']}"}),
            statement=[_prop("PartNumber", part), _prop("RevisionBuilt", edge["revision"]),
                       _prop("BulkCount", float(edge["built_quantity"]), f"{HS}/BulkCount/1/0"),
                       _prop("QuantityPerParent", float(edge["quantity_per_parent"])),
                       _prop("HeldNow", now(part))])
        if part not in path:  # a structure never contains itself; guard against a bad BOM
            for child in children.get(part, []):
                entity.statement.add(node(child, (*path, part)))
        return entity

    entry = model.Entity("EntryNode", model.EntityType.SELF_MANAGED_ENTITY, global_asset_id=asset_id,
                         semantic_id=_semantic(f"{HS}/EntryNode/1/0"),
                         statement=[_prop("PartNumber", product), _prop("HeldNow", now(product))])
    for edge in children.get(product, []):
        entry.statement.add(node(edge, (product,)))
    in_structure = {e["part_number"] for e in edges} | {product}
    for part in sorted(set(held) - in_structure):  # fitted by service outside the built structure
        entry.statement.add(node({"part_number": part, "find_number": None, "revision": None,
                                  "built_quantity": 0.0, "quantity_per_parent": 0.0}, (product,)))
    submodel = model.Submodel(submodel_id, id_short="BillOfMaterial", semantic_id=_semantic(HS_SUBMODEL),
                              submodel_element=[_prop("ArcheType", "Full", f"{HS}/ArcheType/1/0"), entry])
    _relate(entry)
    return submodel


def _relate(parent) -> None:
    """HasPart from every node to each of its child nodes, inside the parent (archetype Full)."""
    from basyx.aas import model

    kids = [s for s in parent.statement if isinstance(s, model.Entity)]
    for kid in kids:
        parent.statement.add(model.RelationshipElement(
            _id_short(f"HasPart_{kid.id_short}"), first=model.ModelReference.from_referable(parent),
            second=model.ModelReference.from_referable(kid), semantic_id=_semantic(f"{HS}/HasPart/1/0")))
        _relate(kid)


def _encoder():
    from basyx.aas.adapter.json import AASToJsonEncoder

    class Encoder(AASToJsonEncoder):
        """basyx-python-sdk 2.2 writes an Entity's `specificAssetIds` even when it has none; the
        AAS v3 schema forbids the empty array (aas-test-engines: "Empty array not allowed")."""

        @classmethod
        def _entity_to_json(cls, obj):
            data = super()._entity_to_json(obj)
            if not data.get("specificAssetIds"):
                data.pop("specificAssetIds", None)
            return data

    return Encoder


def _write_json(file, store) -> None:
    """The environment as JSON through basyx's encoder, in one call to json.dumps: basyx's own
    writer streams with json.dump, whose pure-Python encoder takes seconds per unit here."""
    from basyx.aas.adapter.json import object_store_to_json

    file.write(object_store_to_json(store, encoder=_encoder()))


def _store(objects):
    from basyx.aas import model

    return model.DictObjectStore(objects)


def document(warehouse: Path, serial: str) -> str:
    """The unit's shell as AAS v3 JSON text."""
    buf = io.StringIO()
    _write_json(buf, _store(shells(warehouse, [serial])))
    return buf.getvalue()


def export(warehouse: Path, units: str | Iterable[str], out: Path, fmt: str | None = None) -> list[Path]:
    """Write the shells of `units` (a serial, or several): to a .json or .aasx file (every unit in
    it), or to a folder with one file per unit. `fmt` (json, aasx): the format of a folder's files;
    a file's comes from its suffix."""
    from unittest import mock

    from basyx.aas import model
    from basyx.aas.adapter import aasx

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
            # The package's environment as JSON: basyx writes XML in the AAS 3.1 namespace, which
            # AAS 3.0 readers (and aas-test-engines 1.0) reject; the package writer calls basyx's
            # JSON writer by name, hence the patch for this call.
            with mock.patch.object(aasx, "write_aas_json_file", _write_json), aasx.AASXWriter(str(path)) as writer:
                writer.write_aas([o.id for o in objects if isinstance(o, model.AssetAdministrationShell)],
                                 _store(objects), aasx.DictSupplementaryFileContainer(), write_json=True)
        else:
            with path.open("w", encoding="utf-8") as f:
                _write_json(f, _store(objects))
        written.append(path)
    return written
