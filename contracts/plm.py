"""PLM: the as-designed product. System of record for parts, EBOM, changes and design limits."""

from datetime import timedelta

import pandera.pandas as pa
from pandera.typing import Series

from ._base import EntityContract, SystemContract
from ._types import Int, Timestamp, one_of, rule, ts

SYSTEM = SystemContract(
    system="plm",
    title="PLM",
    owner_team="Engineering (PLM team)",
    contact="plm-team@example.com",
    system_of_record_for=(
        "parts",
        "part_revisions",
        "bom_lines",
        "ecos",
        "eco_affected_items",
        "sensor_limits",
    ),
    contract_version="1.0.0",
    freshness_limit=timedelta(hours=24),
    description="Engineering exports a full snapshot of the product definition as CSV files.",
)


class Parts(pa.DataFrameModel):
    part_number: Series[str]
    name: Series[str] = pa.Field(nullable=True)
    part_type: Series[str] = one_of("product", "assembly", "component", "software")
    make_buy: Series[str] = one_of("make", "buy")
    unit_of_measure: Series[str] = pa.Field(nullable=True)
    created_at: Series[Timestamp] = ts(nullable=True)


REVISION_STATES = ("in_work", "released", "superseded", "obsolete", "cancelled")


class PartRevisions(pa.DataFrameModel):
    part_number: Series[str]
    revision: Series[str]
    state: Series[str] = one_of(*REVISION_STATES)
    released_at: Series[Timestamp] = ts(nullable=True)
    eco_number: Series[str] = pa.Field(nullable=True)
    description: Series[str] = pa.Field(nullable=True)

    @rule("a released or superseded revision must have released_at",
          violation="state IN ('released', 'superseded') AND released_at IS NULL")
    def released_has_date(cls, df):
        return ~(df["state"].isin(["released", "superseded"]) & df["released_at"].isna())


class BomLines(pa.DataFrameModel):
    parent_part_number: Series[str]
    parent_revision: Series[str]
    find_number: Series[Int]
    child_part_number: Series[str]
    quantity: Series[float] = pa.Field(gt=0, metadata={"explain": "must be > 0"})

    @rule("a part cannot contain itself",
          violation="parent_part_number = child_part_number")
    def not_self(cls, df):
        return df["parent_part_number"] != df["child_part_number"]


ECO_STATES = ("draft", "in_review", "released", "cancelled")
FIELD_ACTIONS = ("none", "inspect", "retrofit")
_DATE_TEXT = r"^\d{4}-\d{2}-\d{2}$"


class Ecos(pa.DataFrameModel):
    eco_number: Series[str]
    title: Series[str] = pa.Field(nullable=True)
    reason: Series[str] = pa.Field(nullable=True)
    state: Series[str] = one_of(*ECO_STATES)
    created_at: Series[Timestamp] = ts(nullable=True)
    released_at: Series[Timestamp] = ts(nullable=True)
    effectivity_type: Series[str] = one_of("date", "serial")
    effective_from: Series[str] = pa.Field(nullable=True)
    field_action: Series[str] = one_of(*FIELD_ACTIONS)

    @rule("a released ECO must have released_at and effective_from",
          violation="state = 'released' AND (released_at IS NULL OR effective_from IS NULL)")
    def released_is_dated(cls, df):
        released = df["state"] == "released"
        return ~(released & (df["released_at"].isna() | df["effective_from"].isna()))

    @rule("effective_from must be a YYYY-MM-DD date for 'date' effectivity "
          "and a serial number (PREFIX-NUMBER) for 'serial' effectivity",
          violation=rf"""effective_from IS NOT NULL AND NOT (
              (effectivity_type = 'date' AND regexp_matches(effective_from, '{_DATE_TEXT}'))
              OR (effectivity_type = 'serial' AND contains(effective_from, '-')
                  AND NOT regexp_matches(effective_from, '{_DATE_TEXT}')))""")
    def effective_from_matches_type(cls, df):
        value = df["effective_from"].fillna("")
        is_date = value.str.match(_DATE_TEXT)
        is_serial = value.str.contains("-") & ~is_date
        return (
            df["effective_from"].isna()
            | ((df["effectivity_type"] == "date") & is_date)
            | ((df["effectivity_type"] == "serial") & is_serial)
        )


class EcoAffectedItems(pa.DataFrameModel):
    eco_number: Series[str]
    part_number: Series[str]
    from_revision: Series[str] = pa.Field(nullable=True)
    to_revision: Series[str]


class SensorLimits(pa.DataFrameModel):
    product_part_number: Series[str]
    sensor: Series[str]
    unit: Series[str] = pa.Field(nullable=True)
    warning_high: Series[float]
    critical_high: Series[float]

    @rule("critical_high must be >= warning_high",
          violation="critical_high < warning_high")
    def limits_ordered(cls, df):
        return df["critical_high"] >= df["warning_high"]


ENTITIES = (
    EntityContract("plm", "parts", Parts, ("part_number",), "csv", "plm/parts.csv",
                   description="Every part, assembly, product and software item."),
    EntityContract("plm", "part_revisions", PartRevisions, ("part_number", "revision"), "csv",
                   "plm/part_revisions.csv",
                   description="Revisions of parts, with the ECO that released them."),
    EntityContract("plm", "bom_lines", BomLines,
                   ("parent_part_number", "parent_revision", "find_number"), "csv",
                   "plm/bom_lines.csv",
                   description="Engineering BOM: the children of each revision of an assembly."),
    EntityContract("plm", "ecos", Ecos, ("eco_number",), "csv", "plm/ecos.csv",
                   description="Engineering change orders with effectivity and field action."),
    EntityContract("plm", "eco_affected_items", EcoAffectedItems, ("eco_number", "part_number"),
                   "csv", "plm/eco_affected_items.csv",
                   description="Which part revisions each ECO changes."),
    EntityContract("plm", "sensor_limits", SensorLimits, ("product_part_number", "sensor"), "csv",
                   "plm/sensor_limits.csv",
                   description="Design limits for telemetry, per product and sensor."),
)
