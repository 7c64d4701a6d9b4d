"""The contracts on their own: plain pandas in, accepted / rejected / warned rows out."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files

import jsonschema
import pandas as pd
import pandera.pandas as pa
import pytest
import yaml
from pandera.typing import Series

import contracts
from contracts import EntityContract, ExportBreach, enforce

TS = "2026-03-01T08:15:00Z"


def frame(system: str, entity: str, rows: list[dict]) -> pd.DataFrame:
    cols = list(contracts.entity(system, entity).columns)
    return pd.DataFrame([{c: r.get(c) for c in cols} | {k: v for k, v in r.items() if k not in cols} for r in rows],
                        dtype="object")


def good_revision(**kw):
    return {"part_number": "C-1", "revision": "A", "state": "released", "released_at": TS, "eco_number": None} | kw


def good_eco(**kw):
    return {"eco_number": "ECO-1", "title": "t", "reason": "r", "state": "released", "created_at": TS,
            "released_at": TS, "effectivity_type": "date", "effective_from": "2026-04-01",
            "field_action": "retrofit"} | kw


def good_event(**kw):
    return {"event_id": "S-1", "serial_number": "U-1", "event_type": "failure", "occurred_at": TS,
            "closed_at": None} | kw


# (system, entity, good row, bad row, expected rule fragment, expected reason fragment)
ROW_RULES = [
    ("plm", "bom_lines", {"parent_part_number": "A", "parent_revision": "A", "find_number": "10",
                          "child_part_number": "C", "quantity": "2"},
     {"quantity": "-1"}, "greater_than(0)", "quantity: is '-1.0', must be > 0"),
    ("plm", "bom_lines", {"parent_part_number": "A", "parent_revision": "A", "find_number": "10",
                          "child_part_number": "C", "quantity": "2"},
     {"quantity": "two"}, "type float", "'two' is not a number"),
    ("plm", "bom_lines", {"parent_part_number": "A", "parent_revision": "A", "find_number": "10",
                          "child_part_number": "C", "quantity": "2"},
     {"child_part_number": "A"}, "not_self", "a part cannot contain itself"),
    ("plm", "part_revisions", good_revision(), {"state": "frozen"}, "isin", "must be one of"),
    ("plm", "part_revisions", good_revision(), {"released_at": None}, "released_has_date",
     "released or superseded revision must have released_at"),
    ("plm", "ecos", good_eco(), {"released_at": None}, "released_is_dated", "released ECO must have released_at"),
    ("plm", "ecos", good_eco(), {"effectivity_type": "serial", "effective_from": "2026-04-01"},
     "effective_from_matches_type", "serial number"),
    ("plm", "ecos", good_eco(), {"effectivity_type": "date", "effective_from": "HX200-000100"},
     "effective_from_matches_type", "YYYY-MM-DD"),
    ("plm", "sensor_limits", {"product_part_number": "P", "sensor": "s", "unit": "u", "warning_high": "5",
                              "critical_high": "7"}, {"critical_high": "4"}, "limits_ordered",
     "critical_high must be >= warning_high"),
    ("mes", "units", {"serial_number": "U-1", "product_part_number": "P", "product_revision": "A",
                      "build_started_at": TS, "status": "in_build"}, {"status": "shipping"}, "isin", "'shipping'"),
    ("mes", "as_built_components", {"serial_number": "U-1", "part_number": "C", "revision": "A", "quantity": 1.0,
                                    "component_serial": "-", "installed_at": TS, "is_substitute": 0},
     {"quantity": -2.0}, "greater_than(0)", "must be > 0"),
    ("mes", "as_built_components", {"serial_number": "U-1", "part_number": "C", "revision": "A", "quantity": 1.0,
                                    "component_serial": "-", "installed_at": TS, "is_substitute": 0},
     {"installed_at": "yesterday"}, "type timestamp", "not an ISO 8601 timestamp"),
    ("service", "service_events", good_event(), {"closed_at": "2026-02-01T00:00:00Z"}, "closed_after_opened",
     "closed_at must not be before occurred_at"),
    ("service", "service_events", good_event(), {"event_type": "retrofit"}, "retrofit_names_part",
     "retrofit must name the removed or the installed part"),
    ("service", "customers", {"customer_id": "CU-1", "name": "n", "email": "e", "country": "DE"},
     {"country": "Germany"}, "str_matches", "ISO 3166"),
    ("erp", "work_orders", {"work_order_number": "W", "product_part_number": "P", "quantity": "3",
                            "status": "released", "due_date": "2026-05-01"}, {"due_date": "01/05/2026"},
     "type date", "not a YYYY-MM-DD date"),
    ("erp", "work_orders", {"work_order_number": "W", "product_part_number": "P", "quantity": "3",
                            "status": "released"}, {"quantity": "2.5"}, "type int", "not an integer"),
]


@pytest.mark.parametrize("system,entity,good,bad,rule,reason", ROW_RULES,
                         ids=[f"{r[1]}-{r[4]}" for r in ROW_RULES])
def test_row_rule_rejects_only_the_bad_row(system, entity, good, bad, rule, reason):
    c = contracts.entity(system, entity)
    key_col = next(k for k in reversed(c.key) if c.columns[k] == "str")
    second = dict(good) | bad | {key_col: str(good.get(key_col)) + "-bad"}
    result = enforce(frame(system, entity, [good, second]), c, "test", pd.Series([2, 3]))
    assert len(result.accepted) == 1 and len(result.rejected) == 1
    rejected = result.rejected.iloc[0]
    assert rejected.source_row == 3
    assert rule in rejected.rule
    assert reason in rejected.reason
    assert json.loads(rejected.record)[key_col] == second[key_col]  # the original record is kept


def test_missing_column_breaches_the_whole_export():
    c = contracts.entity("plm", "parts")
    df = frame("plm", "parts", [{"part_number": "P"}]).drop(columns=["part_type"])
    with pytest.raises(ExportBreach) as e:
        enforce(df, c, "plm/parts.csv")
    assert e.value.column == "part_type"
    assert str(e.value).startswith("PLM parts (plm/parts.csv, column 'part_type'): required column 'part_type' missing")


def test_a_column_of_the_wrong_type_breaches_the_export():
    c = contracts.entity("plm", "bom_lines")
    rows = [{"parent_part_number": "A", "parent_revision": "A", "find_number": str(i), "child_part_number": "C",
             "quantity": "lots"} for i in range(3)]
    with pytest.raises(ExportBreach) as e:
        enforce(frame("plm", "bom_lines", rows), c, "plm/bom_lines.csv")
    assert e.value.column == "quantity" and "wrong type" in str(e.value)


def test_duplicate_records_keep_one_copy_and_conflicting_keys_keep_none():
    c = contracts.entity("plm", "parts")
    base = {"part_number": "P-1", "name": "x", "part_type": "component", "make_buy": "buy", "created_at": TS}
    rows = [base, dict(base), base | {"part_number": "P-2"}, base | {"part_number": "P-2", "name": "other"}]
    result = enforce(frame("plm", "parts", rows), c, "t")
    assert list(result.accepted.part_number) == ["P-1"]
    assert sorted(result.rejected.rule) == ["key unique", "key unique", "record unique"]
    assert result.input_rows == 4


def test_timestamps_without_time_zone_are_read_as_utc_with_a_warning():
    c = contracts.entity("mes", "units")
    row = {"serial_number": "U-1", "product_part_number": "P", "product_revision": "A",
           "build_started_at": "2026-03-01 08:15:00", "status": "in_build"}
    result = enforce(frame("mes", "units", [row]), c, "t")
    assert len(result.accepted) == 1 and result.rejected.empty
    assert str(result.accepted.build_started_at.iloc[0]) == "2026-03-01 08:15:00+00:00"
    assert result.warnings.iloc[0].severity == "warning"
    assert "no time zone" in result.warnings.iloc[0].reason


def test_extra_columns_are_carried():
    c = contracts.entity("plm", "parts")
    row = {"part_number": "P", "part_type": "component", "make_buy": "buy", "plant_code": "LY"}
    result = enforce(frame("plm", "parts", [row]), c, "t")
    assert result.accepted.plant_code.tolist() == ["LY"]


def test_every_system_declares_ownership_and_freshness():
    assert set(contracts.SYSTEMS) == {"plm", "mes", "erp", "service"}
    for system in contracts.SYSTEMS.values():
        assert system.owner_team and system.contract_version and system.freshness_limit.total_seconds() > 0
        owned = {e.entity for e in contracts.ENTITIES.values() if e.system == system.system}
        assert owned == set(system.system_of_record_for)


def test_contracts_import_without_dagster():
    code = "import sys, contracts; assert 'dagster' not in sys.modules, 'dagster imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_odcs_export_validates_against_the_official_schema(tmp_path):
    from open_data_contract_standard.model import OpenDataContractStandard

    from contracts.odcs import export

    schema = json.loads((files("open_data_contract_standard") / "schema.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    paths = export(tmp_path, contracts.SYSTEMS, contracts.ENTITIES)
    assert len(paths) == 4
    for path in paths:
        doc = yaml.safe_load(path.read_text())
        errors = [e.message for e in validator.iter_errors(doc)]
        assert errors == [], (path.name, errors[:3])
        model = OpenDataContractStandard.from_file(str(path))
        system = contracts.SYSTEMS[path.name.split(".")[0]]
        assert model.version == system.contract_version
        assert model.team.name == system.owner_team
        assert {s.name for s in model.schema_} == set(system.system_of_record_for)
    doc = yaml.safe_load((tmp_path / "service.odcs.yaml").read_text())
    customers = next(s for s in doc["schema"] if s["name"] == "customers")
    assert next(p for p in customers["properties"] if p["name"] == "email")["classification"] == "restricted"


def test_reasons_never_repeat_personal_data():
    class Contacts(pa.DataFrameModel):
        contact_id: Series[str]
        email: Series[str] = pa.Field(str_matches=r"^[^@]+@[^@]+$")
        phone: Series[str] = pa.Field(str_matches=r"^\+\d+$")

    c = EntityContract("service", "contacts", Contacts, ("contact_id",), "jsonl", "x.jsonl",
                       personal_data=("email",))
    rows = pd.DataFrame([{"contact_id": "1", "email": "grace-at-navy.mil", "phone": "12"}], dtype="object")
    reason = enforce(rows, c, "t").rejected.iloc[0].reason
    assert "grace" not in reason and "personal data" in reason
    assert "'12'" in reason  # values that are not personal data are shown, to help fix them


def test_dbt_sources_are_generated_from_the_contracts():
    """One fact in one place: dbt's source definitions are the contracts' (`python -m contracts.dbt`)."""
    from contracts import dbt
    from orchestration.dbt_project import DBT_DIR

    for path, text in dbt.generated(DBT_DIR).items():
        assert path.read_text() == text, f"{path} differs from the contracts: run `python -m contracts.dbt`"
