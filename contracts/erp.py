"""ERP: orders, purchasing and the item master (Operations / Finance)."""

from datetime import timedelta

import pandera.pandas as pa
from pandera.typing import Series

from ._base import EntityContract, SystemContract
from ._types import Date, Int, Timestamp, one_of, rule, ts

SYSTEM = SystemContract(
    system="erp",
    title="ERP",
    owner_team="Operations / Finance (ERP team)",
    contact="erp-team@example.com",
    system_of_record_for=(
        "work_orders",
        "purchase_orders",
        "item_master",
        "engineering_change_log",
    ),
    contract_version="1.0.0",
    freshness_limit=timedelta(hours=24),
    description="ERP drops CSV snapshots into a folder.",
)


class WorkOrders(pa.DataFrameModel):
    work_order_number: Series[str]
    product_part_number: Series[str]
    product_revision: Series[str] = pa.Field(nullable=True)
    quantity: Series[Int] = pa.Field(gt=0, metadata={"explain": "must be > 0"})
    plant: Series[str] = pa.Field(nullable=True)
    status: Series[str] = one_of("planned", "released", "closed")
    created_at: Series[Timestamp] = ts(nullable=True)
    due_date: Series[Date] = pa.Field(nullable=True)


class PurchaseOrders(pa.DataFrameModel):
    po_number: Series[str]
    line: Series[Int]
    part_number: Series[str]
    revision: Series[str] = pa.Field(nullable=True)
    supplier_id: Series[str] = pa.Field(nullable=True)
    quantity: Series[float] = pa.Field(gt=0, metadata={"explain": "must be > 0"})
    unit_price: Series[float] = pa.Field(ge=0, nullable=True, metadata={"explain": "must be >= 0"})
    currency: Series[str] = pa.Field(str_matches=r"^[A-Z]{3}$", nullable=True,
                                     metadata={"explain": "must be an ISO 4217 code like EUR"})
    ordered_at: Series[Timestamp] = ts(nullable=True)
    received_at: Series[Timestamp] = ts(nullable=True)
    status: Series[str] = one_of("open", "received", "cancelled")

    @rule("a received order line must have received_at",
          violation="status = 'received' AND received_at IS NULL")
    def received_has_date(cls, df):
        return ~((df["status"] == "received") & df["received_at"].isna())


class ItemMaster(pa.DataFrameModel):
    part_number: Series[str]
    current_revision: Series[str] = pa.Field(nullable=True)
    standard_cost: Series[float] = pa.Field(ge=0, nullable=True, metadata={"explain": "must be >= 0"})
    lead_time_days: Series[Int] = pa.Field(ge=0, nullable=True, metadata={"explain": "must be >= 0"})
    updated_at: Series[Timestamp] = ts(nullable=True)


class EngineeringChangeLog(pa.DataFrameModel):
    eco_number: Series[str]
    part_number: Series[str]
    new_revision: Series[str] = pa.Field(nullable=True)
    applied_at: Series[Timestamp] = ts()


ENTITIES = (
    EntityContract("erp", "work_orders", WorkOrders, ("work_order_number",), "csv",
                   "erp/work_orders.csv", description="Production orders units are built under."),
    EntityContract("erp", "purchase_orders", PurchaseOrders, ("po_number", "line"), "csv",
                   "erp/purchase_orders.csv", description="Purchase order lines for bought parts."),
    EntityContract("erp", "item_master", ItemMaster, ("part_number",), "csv",
                   "erp/item_master.csv", description="The revision ERP plans and buys, and cost."),
    EntityContract("erp", "engineering_change_log", EngineeringChangeLog,
                   ("eco_number", "part_number"), "csv", "erp/engineering_change_log.csv",
                   description="ERP's record of processing each ECO, per part."),
)
