"""The published twins as an AAS repository: the read operations of the AAS Part 2 HTTP/REST API
v3.0 (profiles SSP-002 of the Asset Administration Shell Repository and of the Submodel
Repository), served by `thread api`.

- `GET /shells` (paged by `limit` and `cursor`; `idShort`; `assetIds`: base64url JSON
  `{"name": "serialNumber", "value": SERIAL}` or `{"name": "globalAssetId", ...}`), `/shells/$reference`,
  `/shells/{id}`, `/$reference`, `/asset-information`, `/submodel-refs`, `/submodels/{id}/...`;
- `GET /submodels` (and `$metadata`, `$value`, `$reference`, `$path`), `/submodels/{id}` with the same
  modifiers, `/submodel-elements` and `/submodel-elements/{idShortPath}` (with `level`, `extent`);
- `GET /serialization?aasIds=&submodelIds=` (an AAS environment), `/description` (the profiles);
- `GET /lookup/shells?assetIds=` (Discovery: the shell ids of an asset, e.g. a serial number).

Identifiers in paths are base64url-encoded, as the standard says. Errors are the standard's
`Result` (`{"messages": [{"code", "messageType", "text", "timestamp"}]}`), 400 for a malformed
request, 404 for what is not there. The objects themselves come from `aas` (aas-core3.0), the
same ones `thread twin export` writes; this module only finds, pages, projects and encodes them.

Reads the published warehouse read-only through one connection per published file: a publish
swaps the file and the next request opens the new one, while requests already running finish on
the old one (DuckDB keeps the replaced file open), so an answer is never half of each.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import aas, lake

SSP = "https://admin-shell.io/aas/API/3/0/"
PROFILES = [f"{SSP}AssetAdministrationShellRepositoryServiceSpecification/SSP-002",
            f"{SSP}SubmodelRepositoryServiceSpecification/SSP-002"]
DEFAULT_LIMIT = 100
# A larger `limit` gets this many and a cursor: one request never builds the fleet.
MAX_LIMIT = 1000
# `/serialization` without ids is the whole repository; past this many twins ask for ids (or use
# `thread twin export`, which writes a folder) instead of building one response of the fleet.
SERIALIZE_ALL_MAX_UNITS = 1000
# Submodels kept built (per published file), as JSON text: one bill of material is ~1 MB at
# 1,000 parts. Text, not parsed objects: the garbage collector would walk every one of those on
# each collection, and the pauses showed in the response times.
CACHED_SUBMODELS = 32

# Where each kind of element keeps its children (idShortPath steps into these).
CHILDREN = {"Submodel": "submodelElements", "SubmodelElementCollection": "value", "SubmodelElementList": "value",
            "Entity": "statements", "AnnotatedRelationshipElement": "annotations"}
# What $metadata leaves out: the values. An entity's asset ids and a relationship's two ends stay:
# the schema requires them (AASd-014; first and second are mandatory).
VALUES = ("value", "valueId", "submodelElements", "statements", "annotations", "inputVariables", "outputVariables",
          "inoutputVariables", "min", "max")
PATH_STEP = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)((?:\[\d+\])*)")


class ApiError(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


def _json(body, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _error(status: int, text: str) -> Response:
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _json({"messages": [{"code": str(status), "messageType": "Error", "text": text, "timestamp": stamp}]},
                 status)


# -- request parameters ---------------------------------------------------------------------------


def b64decode(text: str, what: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{what} {text!r} is not base64url-encoded UTF-8 text") from None


def b64encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"limit must be a positive whole number, not {raw!r}")
    return min(int(raw), MAX_LIMIT)


def _cursor(request: Request) -> str | None:
    raw = request.query_params.get("cursor")
    return None if raw is None else b64decode(raw, "cursor")


def _choice(request: Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = request.query_params.get(name, default)
    raw = next((a for a in allowed if a.lower() == raw.lower()), raw)
    if raw not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
    return raw


def _level(request: Request) -> str:
    """`level` (deep or core), checked along with `extent` (no element here holds a blob, so both
    extents answer the same)."""
    _choice(request, "extent", ("withoutBlobValue", "withBlobValue"), "withoutBlobValue")
    return _choice(request, "level", ("deep", "core"), "deep")


def _asset_ids(request: Request) -> list[tuple[str, str]]:
    out = []
    for raw in request.query_params.getlist("assetIds"):
        text = b64decode(raw, "assetIds")
        try:
            item = json.loads(text)
            out.append((str(item["name"]), str(item["value"])))
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, f"assetIds {raw!r} is not a base64url-encoded {{\"name\", \"value\"}} object") \
                from None
    return out


def _serial_of_asset_ids(asset_ids: list[tuple[str, str]]) -> str | None:
    """The one serial that every given asset id names, '' when they name none or differ."""
    serials = set()
    for name, value in asset_ids:
        serials.add(aas.serial_of_asset(value) if name == "globalAssetId" else value if name == "serialNumber"
                    else None)
    return next(iter(serials)) or "" if len(serials) == 1 else ""


def _paged(items: list, limit: int, last_key) -> dict:
    """`items` holds up to limit + 1 entries: the extra one says there is a next page."""
    meta = {"cursor": b64encode(last_key(items[limit - 1]))} if len(items) > limit else {}
    return {"paging_metadata": meta, "result": items[:limit]}


# -- projections of a submodel or an element (JSON as basyx writes it) -------------------------------


def _typed(value, value_type: str):
    if value is None:
        return None
    if value_type in ("xs:double", "xs:float", "xs:decimal"):
        return float(value)
    if value_type in ("xs:long", "xs:int", "xs:integer", "xs:short", "xs:byte"):
        return int(value)
    if value_type == "xs:boolean":
        return value == "true"
    return value


def value_only(element: dict):
    """The ValueOnly form of an element (AAS Part 2, ValueOnly serialization)."""
    kind = element["modelType"]
    if kind == "Property":
        return _typed(element.get("value"), element["valueType"])
    if kind in ("Submodel", "SubmodelElementCollection"):
        return {c["idShort"]: value_only(c) for c in element.get(CHILDREN[kind], [])}
    if kind == "SubmodelElementList":
        return [value_only(c) for c in element.get("value", [])]
    if kind == "Entity":
        out = {"statements": {c["idShort"]: value_only(c) for c in element.get("statements", [])},
               "entityType": element["entityType"]}
        for key in ("globalAssetId", "specificAssetIds"):
            if key in element:
                out[key] = element[key]
        return out
    if kind in ("RelationshipElement", "AnnotatedRelationshipElement"):
        out = {"first": element["first"], "second": element["second"]}
        if element.get("annotations"):
            out["annotations"] = {c["idShort"]: value_only(c) for c in element["annotations"]}
        return out
    if kind == "MultiLanguageProperty":
        return [{t["language"]: t["text"]} for t in element.get("value", [])]
    if kind == "Range":
        return {k: _typed(element.get(k), element["valueType"]) for k in ("min", "max") if k in element}
    if kind in ("File", "Blob"):
        return {k: element[k] for k in ("contentType", "value") if k in element}
    return element.get("value")


def _metadata(element: dict) -> dict:
    return {k: v for k, v in element.items() if k not in VALUES}


def _core(element: dict, depth: int = 1) -> dict:
    """`level=core`: the element and its direct children, without theirs."""
    key = CHILDREN.get(element["modelType"])
    if key is None or key not in element:
        return element
    if depth == 0:
        return {k: v for k, v in element.items() if k != key}
    return {**element, key: [_core(c, depth - 1) for c in element[key]]}


def _paths(elements: list[dict], prefix: str = "", deep: bool = True) -> list[str]:
    out = []
    for i, e in enumerate(elements):
        path = f"{prefix}[{i}]" if "idShort" not in e else f"{prefix}.{e['idShort']}" if prefix else e["idShort"]
        out.append(path)
        key = CHILDREN.get(e["modelType"])
        if deep and key and e.get(key):
            if e["modelType"] == "SubmodelElementList":
                out += _paths([{k: v for k, v in c.items() if k != "idShort"} for c in e[key]], path)
            else:
                out += _paths(e[key], path)
    return out


def _reference(keys: list[dict]) -> dict:
    return {"type": "ModelReference", "keys": keys}


def find(submodel: dict, path: str) -> tuple[dict, list[dict]]:
    """The element at an idShortPath (`a.b[0].c`) and the keys of its ModelReference."""
    node, keys = submodel, [{"type": "Submodel", "value": submodel["id"]}]
    for step in path.split("."):
        m = PATH_STEP.fullmatch(step)
        if not m:
            raise ApiError(400, f"idShortPath {path!r}: {step!r} is not an idShort (optionally with [index])")
        name, indexes = m.group(1), [int(i) for i in re.findall(r"\d+", m.group(2))]
        node = next((c for c in node.get(CHILDREN.get(node["modelType"], ""), []) if c.get("idShort") == name),
                    None)
        if node is None:
            raise ApiError(404, f"no submodel element {path!r} in submodel {submodel['id']!r}")
        keys.append({"type": node["modelType"], "value": name})
        for i in indexes:
            items = node.get("value", []) if node["modelType"] == "SubmodelElementList" else []
            if i >= len(items):
                raise ApiError(404, f"no submodel element {path!r} in submodel {submodel['id']!r}")
            node = items[i]
            keys.append({"type": node["modelType"], "value": str(i)})
    return node, keys


# -- the repository over the published warehouse -----------------------------------------------------


class Repository:
    def __init__(self, warehouse: Path):
        self.warehouse = Path(warehouse)
        self._lock = threading.Lock()
        self._stamp = None
        self._con = None
        self._built: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def _current(self):
        """The connection to the published file, reopened (and the built submodels dropped) when a
        publish replaced it."""
        try:
            st = self.warehouse.stat()
        except FileNotFoundError:
            raise ApiError(503, f"nothing is published yet ({self.warehouse} does not exist): run `thread build`") \
                from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._con = lake.open_published(self.warehouse)
                self._stamp = stamp
                self._built.clear()
            return self._con

    def _cursor(self):
        cur = self._current().cursor()
        cur.execute(f"USE {lake.PUBLISHED}")
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    def _units(self, cur, after: str | None, limit: int | None, serial: str | None = None,
               id_short: str | None = None) -> list[dict]:
        where, params = ["true"], []
        if after is not None:
            where.append("serial_number > ?")
            params.append(after)
        if serial is not None:
            where.append("serial_number = ?")
            params.append(serial)
        if id_short is not None:
            where.append(f"{aas.ID_SHORT_SQL} = ?")
            params.append(id_short)
        sql = (f"SELECT serial_number, product_part_number FROM twin.unit_twin WHERE {' AND '.join(where)} "
               "ORDER BY serial_number")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return aas._rows(cur, sql, params)

    def shells(self, after: str | None, limit: int, asset_ids=(), id_short: str | None = None) -> list[dict]:
        serial = _serial_of_asset_ids(list(asset_ids)) if asset_ids else None
        if serial == "":
            return []
        cur = self._cursor()
        try:
            rows = self._units(cur, after, limit, serial, id_short)
        finally:
            cur.close()
        return [aas.jsonable(aas.shell(r["serial_number"], r["product_part_number"])) for r in rows]

    def shell(self, identifier: str) -> dict:
        serial = aas.serial_of_shell(identifier)
        found = self.shells(None, 1, [("serialNumber", serial)]) if serial else []
        if not found:
            raise ApiError(404, f"no asset administration shell {identifier!r}")
        return found[0]

    def submodel(self, identifier: str, of_shell: str | None = None) -> dict:
        return json.loads(self.submodel_text(identifier, of_shell))

    def submodel_text(self, identifier: str, of_shell: str | None = None) -> bytes:
        parsed = aas.parse_submodel_id(identifier)
        if parsed is None or (of_shell is not None and aas.aas_id(parsed[1]) != of_shell):
            where = f" in shell {of_shell!r}" if of_shell else ""
            raise ApiError(404, f"no submodel {identifier!r}{where}")
        self._current()
        with self._lock:
            hit = self._built.get(parsed)
        if hit is None:
            hit = self._build([parsed])[0]
        return hit

    def _build(self, wanted: list[tuple[str, str]]) -> list[bytes]:
        cur = self._cursor()
        try:
            stamp = self._stamp
            units = sorted({serial for _, serial in wanted})
            sources = sorted({s for kind, _ in wanted for s in aas.SUBMODELS[kind]} | {"twin"})
            rows = aas.load(cur, units, sources)
        finally:
            cur.close()
        out = []
        for kind, serial in wanted:
            if serial not in rows["twin"]:
                raise ApiError(404, f"no submodel {aas.submodel_id(kind, serial)!r}: unit {serial!r} has no twin")
            built = orjson.dumps(aas.jsonable(aas.submodel(kind, serial, {s: rows[s].get(serial, []) for s in sources})))
            out.append(built)
            with self._lock:
                if self._stamp == stamp:
                    self._built[(kind, serial)] = built
                    while len(self._built) > CACHED_SUBMODELS:
                        self._built.popitem(last=False)
        return out

    def submodels(self, after: str | None, limit: int) -> tuple[list[dict], bool]:
        """A page of submodels in (serial, kind) order after the submodel id `after`; and whether
        more follow."""
        kinds = list(aas.SUBMODELS)
        start = aas.parse_submodel_id(after) if after else None
        if after and start is None:
            raise ApiError(400, f"cursor {after!r} is not a submodel of this repository")
        cur = self._cursor()
        try:
            units = self._units(cur, None if start is None else start[1], limit // len(kinds) + 2)
            if start is not None:  # the rest of the unit the last page ended in
                units = self._units(cur, None, None, start[1]) + units
        finally:
            cur.close()
        pairs = [(k, u["serial_number"]) for u in units for k in kinds]
        if start is not None:
            pairs = pairs[pairs.index(start) + 1:] if start in pairs else []
        page = pairs[:limit + 1]
        built = {p: self._built.get(p) for p in page[:limit]}
        missing = [p for p, b in built.items() if b is None]
        for p, b in zip(missing, self._build(missing) if missing else [], strict=True):
            built[p] = b
        return [json.loads(built[p]) for p in page[:limit]], len(page) > limit


# -- routes ----------------------------------------------------------------------------------------


def _submodel_view(repo: Repository, request: Request, text: bytes, rest: list[str]) -> Response:
    """/submodels/{id}[/...] and /shells/{id}/submodels/{id}[/...], from the submodel's JSON text."""
    if not rest:
        level = _level(request)
        if level == "deep":
            return Response(text, media_type="application/json")
        return _json(_core(json.loads(text)))
    submodel = json.loads(text)
    if len(rest) == 1 and rest[0].startswith("$"):
        return _json(_modifier(request, submodel, rest[0], [{"type": "Submodel", "value": submodel["id"]}]))
    if rest[0] != "submodel-elements":
        raise ApiError(404, f"no such resource: {request.url.path}")
    elements = submodel.get("submodelElements", [])
    if len(rest) == 1 or (len(rest) == 2 and rest[1].startswith("$")):
        modifier = rest[1] if len(rest) == 2 else ""
        limit, after = _limit(request), _cursor(request)
        level = _level(request)
        start = 0
        if after is not None:
            if not after.isdigit():
                raise ApiError(400, f"cursor {after!r} is not a position in this submodel")
            start = int(after) + 1
        keys = [{"type": "Submodel", "value": submodel["id"]}]
        # $path pages over the paths themselves (every element's, down the tree), the rest over the
        # submodel's own elements.
        items = _paths(elements, deep=level == "deep") if modifier == "$path" else elements
        page = items[start:start + limit]
        if modifier == "":
            result = [_core(e, 0) if level == "core" else e for e in page]
        elif modifier == "$path":
            result = page
        else:
            result = [_modifier(request, e, modifier, [*keys, {"type": e["modelType"], "value": e["idShort"]}],
                                e["idShort"]) for e in page]
        more = len(items) > start + limit
        return _json({"paging_metadata": {"cursor": b64encode(str(start + limit - 1))} if more else {},
                      "result": result})
    element, keys = find(submodel, rest[1])
    modifier = rest[2] if len(rest) == 3 else ""
    if len(rest) > 3 or (modifier and not modifier.startswith("$") and modifier != "attachment"):
        raise ApiError(404, f"no such resource: {request.url.path}")
    if modifier == "attachment":
        if element["modelType"] != "File":
            raise ApiError(400, f"{rest[1]!r} is a {element['modelType']}, not a File: it has no attachment")
        raise ApiError(404, f"{rest[1]!r} has no attachment")
    if modifier == "":
        level = _level(request)
        return _json(_core(element) if level == "core" else element)
    return _json(_modifier(request, element, modifier, keys, rest[1]))


def _modifier(request: Request, element: dict, modifier: str, keys: list[dict], path: str | None = None):
    """A modifier of a submodel (`path` None) or of the element at `path`."""
    whole_submodel = path is None
    if modifier == "$metadata":
        return _metadata(element)
    if modifier == "$reference":
        return _reference(keys)
    if modifier == "$value":
        level = _level(request)
        shown = _core(element) if level == "core" else element
        return value_only(shown) if whole_submodel else {element.get("idShort", "value"): value_only(shown)}
    if modifier == "$path":
        level = _choice(request, "level", ("deep", "core"), "deep")
        key = CHILDREN.get(element["modelType"])
        if whole_submodel:
            return _paths(element.get(key, []), deep=level == "deep")
        if element["modelType"] not in ("SubmodelElementCollection", "SubmodelElementList", "Entity"):
            raise ApiError(400, f"$path is for elements that hold others; {element['idShort']!r} is a "
                                f"{element['modelType']}")
        return [path, *_paths(element.get(key, []), path, deep=level == "deep")]
    raise ApiError(404, f"no such modifier {modifier!r} (one of $metadata, $value, $reference, $path)")


def _shells(repo: Repository, request: Request, rest: list[str]) -> Response:
    if not rest or rest == ["$reference"]:
        limit, after = _limit(request), _cursor(request)
        id_short = request.query_params.get("idShort")
        items = repo.shells(after, limit + 1, _asset_ids(request), id_short)
        body = _paged(items, limit, lambda s: aas.serial_of_shell(s["id"]))
        if rest:
            body["result"] = [_reference([{"type": "AssetAdministrationShell", "value": s["id"]}])
                              for s in body["result"]]
        return _json(body)
    shell = repo.shell(b64decode(rest[0], "shell id"))
    tail = rest[1:]
    if not tail:
        return _json(shell)
    if tail == ["$reference"]:
        return _json(_reference([{"type": "AssetAdministrationShell", "value": shell["id"]}]))
    if tail == ["asset-information"]:
        return _json(shell["assetInformation"])
    if tail == ["asset-information", "thumbnail"]:
        raise ApiError(404, f"shell {shell['id']!r} has no thumbnail")
    if tail == ["submodel-refs"]:
        limit, after = _limit(request), _cursor(request)
        refs = shell["submodels"]
        start = next((i + 1 for i, r in enumerate(refs) if r["keys"][0]["value"] == after), None) if after else 0
        if start is None:
            raise ApiError(400, f"cursor {after!r} is not a submodel of shell {shell['id']!r}")
        return _json(_paged(refs[start:start + limit + 1], limit, lambda r: r["keys"][0]["value"]))
    if tail[0] == "submodels" and len(tail) >= 2:
        text = repo.submodel_text(b64decode(tail[1], "submodel id"), of_shell=shell["id"])
        return _submodel_view(repo, request, text, tail[2:])
    raise ApiError(404, f"no such resource: {request.url.path}")


def _submodels(repo: Repository, request: Request, rest: list[str]) -> Response:
    if not rest or (len(rest) == 1 and rest[0].startswith("$")):
        modifier = rest[0] if rest else ""
        if modifier not in ("", "$metadata", "$value", "$reference", "$path"):
            raise ApiError(404, f"no such modifier {modifier!r}")
        limit, after = _limit(request), _cursor(request)
        level = _level(request)
        items, more = repo.submodels(after, limit)
        body = {"paging_metadata": {"cursor": b64encode(items[-1]["id"])} if more else {}}
        if modifier == "":
            body["result"] = [_core(s) if level == "core" else s for s in items]
        elif modifier == "$path":
            # One entry per submodel, the root of its elements' paths (those: /submodels/{id}/$path).
            body["result"] = [s["idShort"] for s in items]
        else:
            body["result"] = [_modifier(request, s, modifier, [{"type": "Submodel", "value": s["id"]}])
                              for s in items]
        return _json(body)
    text = repo.submodel_text(b64decode(rest[0], "submodel id"))
    return _submodel_view(repo, request, text, rest[1:])


def _serialization(repo: Repository, request: Request) -> Response:
    aas_ids = [b64decode(x, "aasIds") for x in request.query_params.getlist("aasIds")]
    submodel_ids = [b64decode(x, "submodelIds") for x in request.query_params.getlist("submodelIds")]
    _choice(request, "includeConceptDescriptions", ("true", "false"), "true")
    if not aas_ids and not submodel_ids:
        shells = repo.shells(None, SERIALIZE_ALL_MAX_UNITS + 1)
        if len(shells) > SERIALIZE_ALL_MAX_UNITS:
            raise ApiError(400, f"the repository holds more than {SERIALIZE_ALL_MAX_UNITS} twins: name them with "
                                f"aasIds/submodelIds (or write the fleet with `thread twin export`)")
        wanted = [(k, aas.serial_of_shell(s["id"])) for s in shells for k in aas.SUBMODELS]
    else:
        shells = [repo.shell(i) for i in aas_ids]
        wanted = []
        for i in submodel_ids:
            parsed = aas.parse_submodel_id(i)
            if parsed is None:
                raise ApiError(404, f"no submodel {i!r}")
            wanted.append(parsed)
    env = {}
    if shells:
        env["assetAdministrationShells"] = shells
    if wanted:
        env["submodels"] = [repo.submodel(aas.submodel_id(k, s)) for k, s in wanted]
    return _json(env)


def _lookup(repo: Repository, request: Request) -> Response:
    asset_ids = _asset_ids(request)
    if not asset_ids:
        raise ApiError(400, "assetIds is required: base64url-encoded {\"name\": \"serialNumber\", \"value\": ...}")
    limit, after = _limit(request), _cursor(request)
    shells = repo.shells(after, limit + 1, asset_ids)
    body = _paged([s["id"] for s in shells], limit, aas.serial_of_shell)
    return _json(body)


def routes(warehouse: Path) -> list[Route]:
    repo = Repository(warehouse)

    def handle(request: Request) -> Response:
        parts = [p for p in request.scope["path"].split("/") if p]
        try:
            if parts[0] == "shells":
                return _shells(repo, request, parts[1:])
            if parts[0] == "submodels":
                return _submodels(repo, request, parts[1:])
            if parts == ["serialization"]:
                return _serialization(repo, request)
            if parts == ["description"]:
                return _json({"profiles": PROFILES})
            if parts == ["lookup", "shells"]:
                return _lookup(repo, request)
            raise ApiError(404, f"no such resource: {request.url.path}")
        except ApiError as e:
            return _error(e.status, e.text)

    return [Route(path, handle, methods=["GET"]) for path in (
        "/shells", "/shells/{rest:path}", "/submodels", "/submodels/{rest:path}", "/serialization", "/description",
        "/lookup/shells")]
