"""Service: the product in the field (Service / Customer support), including telemetry."""

from datetime import timedelta

import pandera.pandas as pa
from pandera.typing import Series

from ._base import EntityContract, SystemContract
from ._types import Timestamp, one_of, rule, ts

SYSTEM = SystemContract(
    system="service",
    title="Service",
    owner_team="Service / Customer support",
    contact="service-ops@example.com",
    system_of_record_for=(
        "customers",
        "installations",
        "service_events",
        "warranty_claims",
        "service_bulletins",
        "telemetry",
    ),
    contract_version="1.0.0",
    freshness_limit=timedelta(hours=6),
    description="Field service exports JSON Lines; connected units send telemetry as Parquet.",
)


class Customers(pa.DataFrameModel):
    customer_id: Series[str]
    name: Series[str] = pa.Field(nullable=True)
    email: Series[str] = pa.Field(nullable=True)
    country: Series[str] = pa.Field(str_matches=r"^[A-Z]{2}$", nullable=True,
                                    metadata={"explain": "must be an ISO 3166 alpha-2 code like DE"})


class Installations(pa.DataFrameModel):
    serial_number: Series[str]
    customer_id: Series[str]
    site: Series[str] = pa.Field(nullable=True)
    installed_at: Series[Timestamp] = ts(nullable=True)


SERVICE_EVENT_TYPES = ("failure", "maintenance", "inspection", "retrofit")


class ServiceEvents(pa.DataFrameModel):
    event_id: Series[str]
    serial_number: Series[str]
    event_type: Series[str] = one_of(*SERVICE_EVENT_TYPES)
    occurred_at: Series[Timestamp] = ts()
    closed_at: Series[Timestamp] = ts(nullable=True)
    failed_part_number: Series[str] = pa.Field(nullable=True)
    symptom_code: Series[str] = pa.Field(nullable=True)
    removed_part_number: Series[str] = pa.Field(nullable=True)
    removed_revision: Series[str] = pa.Field(nullable=True)
    installed_part_number: Series[str] = pa.Field(nullable=True)
    installed_revision: Series[str] = pa.Field(nullable=True)
    installed_component_serial: Series[str] = pa.Field(nullable=True)
    eco_number: Series[str] = pa.Field(nullable=True)
    notes: Series[str] = pa.Field(nullable=True)

    @rule("closed_at must not be before occurred_at",
          violation="closed_at < occurred_at")
    def closed_after_opened(cls, df):
        return df["closed_at"].isna() | (df["closed_at"] >= df["occurred_at"])

    @rule("a retrofit must name the removed or the installed part",
          violation="event_type = 'retrofit' AND removed_part_number IS NULL AND installed_part_number IS NULL")
    def retrofit_names_part(cls, df):
        return ~(
            (df["event_type"] == "retrofit")
            & df["removed_part_number"].isna()
            & df["installed_part_number"].isna()
        )

    @rule("an installed part must come with its installed_revision",
          violation="installed_part_number IS NOT NULL AND installed_revision IS NULL")
    def installed_has_revision(cls, df):
        return df["installed_part_number"].isna() | df["installed_revision"].notna()


class WarrantyClaims(pa.DataFrameModel):
    claim_id: Series[str]
    serial_number: Series[str]
    event_id: Series[str] = pa.Field(nullable=True)
    claimed_at: Series[Timestamp] = ts(nullable=True)
    amount: Series[float] = pa.Field(ge=0, nullable=True, metadata={"explain": "must be >= 0"})
    currency: Series[str] = pa.Field(nullable=True)
    status: Series[str] = one_of("open", "approved", "rejected")


class ServiceBulletins(pa.DataFrameModel):
    bulletin_number: Series[str]
    eco_number: Series[str] = pa.Field(nullable=True)
    title: Series[str] = pa.Field(nullable=True)
    issued_at: Series[Timestamp] = ts()
    action: Series[str] = one_of("inform", "inspect", "retrofit")


class Telemetry(pa.DataFrameModel):
    serial_number: Series[str]
    ts: Series[Timestamp] = ts()
    sensor: Series[str]
    value: Series[float]


ENTITIES = (
    EntityContract("service", "customers", Customers, ("customer_id",), "jsonl",
                   "service/customers.jsonl", personal_data=("name", "email"),
                   description="Customers; name and email are personal data."),
    EntityContract("service", "installations", Installations, ("serial_number",), "jsonl",
                   "service/installations.jsonl", description="Where each shipped unit runs."),
    EntityContract("service", "service_events", ServiceEvents, ("event_id",), "jsonl",
                   "service/service_events.jsonl", mode="events", event_time="occurred_at",
                   description="Failures, maintenance, inspections and retrofits; grows only."),
    EntityContract("service", "warranty_claims", WarrantyClaims, ("claim_id",), "jsonl",
                   "service/warranty_claims.jsonl", description="Warranty claims on service events."),
    EntityContract("service", "service_bulletins", ServiceBulletins, ("bulletin_number",), "jsonl",
                   "service/service_bulletins.jsonl",
                   description="Service's notices of engineering changes."),
    EntityContract("service", "telemetry", Telemetry, ("serial_number", "ts", "sensor"), "parquet",
                   "service/telemetry/*.parquet", mode="events", event_time="ts",
                   description="Sensor readings, long format; new files only ever added."),
)
