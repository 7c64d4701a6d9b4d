"""MES: the as-built product. System of record for units and what went into them."""

from datetime import timedelta

import pandera.pandas as pa
from pandera.typing import Series

from ._base import EntityContract, SystemContract
from ._types import Int, Timestamp, one_of, rule, ts

SYSTEM = SystemContract(
    system="mes",
    title="MES",
    owner_team="Manufacturing (MES team)",
    contact="mes-team@example.com",
    system_of_record_for=(
        "units",
        "as_built_components",
        "production_events",
        "quality_records",
        "work_instructions",
    ),
    contract_version="1.0.0",
    freshness_limit=timedelta(hours=2),
    description="Manufacturing's relational database, read through SQLAlchemy.",
)

UNIT_STATUSES = ("in_build", "completed", "shipped", "scrapped")


class Units(pa.DataFrameModel):
    serial_number: Series[str]
    product_part_number: Series[str]
    product_revision: Series[str]
    work_order_number: Series[str] = pa.Field(nullable=True)
    line_id: Series[str] = pa.Field(nullable=True)
    build_started_at: Series[Timestamp] = ts()
    build_completed_at: Series[Timestamp] = ts(nullable=True)
    status: Series[str] = one_of(*UNIT_STATUSES)
    shipped_at: Series[Timestamp] = ts(nullable=True)

    @rule("a completed or shipped unit must have build_completed_at",
          violation="status IN ('completed', 'shipped') AND build_completed_at IS NULL")
    def completed_has_date(cls, df):
        return ~(df["status"].isin(["completed", "shipped"]) & df["build_completed_at"].isna())

    @rule("a shipped unit must have shipped_at",
          violation="status = 'shipped' AND shipped_at IS NULL")
    def shipped_has_date(cls, df):
        return ~((df["status"] == "shipped") & df["shipped_at"].isna())

    @rule("build_completed_at must not be before build_started_at",
          violation="build_completed_at < build_started_at")
    def completed_after_start(cls, df):
        return df["build_completed_at"].isna() | (df["build_completed_at"] >= df["build_started_at"])


class AsBuiltComponents(pa.DataFrameModel):
    serial_number: Series[str]
    part_number: Series[str]
    revision: Series[str]
    quantity: Series[float] = pa.Field(gt=0, metadata={"explain": "must be > 0"})
    component_serial: Series[str]
    installed_at: Series[Timestamp] = ts(nullable=True)
    is_substitute: Series[Int] = pa.Field(isin=[0, 1], metadata={"explain": "must be 0 or 1"})


class ProductionEvents(pa.DataFrameModel):
    event_id: Series[str]
    serial_number: Series[str]
    station: Series[str] = pa.Field(nullable=True)
    operation: Series[str] = pa.Field(nullable=True)
    event_type: Series[str] = one_of("start", "complete", "fail", "rework")
    occurred_at: Series[Timestamp] = ts()


class QualityRecords(pa.DataFrameModel):
    record_id: Series[str]
    serial_number: Series[str]
    characteristic: Series[str] = pa.Field(nullable=True)
    measured_value: Series[float] = pa.Field(nullable=True)
    lower_limit: Series[float] = pa.Field(nullable=True)
    upper_limit: Series[float] = pa.Field(nullable=True)
    result: Series[str] = one_of("pass", "fail")
    recorded_at: Series[Timestamp] = ts(nullable=True)

    @rule("upper_limit must be >= lower_limit",
          violation="upper_limit < lower_limit")
    def limits_ordered(cls, df):
        both = df["lower_limit"].notna() & df["upper_limit"].notna()
        return ~both | (df["upper_limit"] >= df["lower_limit"])


class WorkInstructions(pa.DataFrameModel):
    instruction_id: Series[str]
    product_part_number: Series[str]
    operation: Series[str] = pa.Field(nullable=True)
    part_number: Series[str]
    revision: Series[str]
    eco_number: Series[str] = pa.Field(nullable=True)
    effective_at: Series[Timestamp] = ts()


ENTITIES = (
    EntityContract("mes", "units", Units, ("serial_number",), "table", "units",
                   description="Every unit MES has started, with its build status."),
    EntityContract("mes", "as_built_components", AsBuiltComponents,
                   ("serial_number", "part_number", "component_serial"), "table",
                   "as_built_components",
                   description="Every item installed in a unit, at any level."),
    EntityContract("mes", "production_events", ProductionEvents, ("event_id",), "table",
                   "production_events", mode="events", event_time="occurred_at",
                   description="Station events; grows only, read incrementally."),
    EntityContract("mes", "quality_records", QualityRecords, ("record_id",), "table",
                   "quality_records", description="Measured characteristics per unit."),
    EntityContract("mes", "work_instructions", WorkInstructions, ("instruction_id",), "table",
                   "work_instructions",
                   description="MES's adoption of engineering changes on the line."),
)
