"""Data contracts of the four owning systems, as plain pandera models plus ownership metadata.

One place defines each contract; Dagster assets, checks, docs and ODCS exports read it from here.
"""

import sys

# pandera imports pyspark.pandas whenever pyspark is installed (it is, for THREAD_ENGINE=spark):
# 0.8 s more on every import and a warning about pandas 3. The contracts validate pandas frames
# only, so pandera is told pyspark.pandas is not there (pyspark.sql, which dbt-spark uses, is).
sys.modules.setdefault("pyspark.pandas", None)

from . import erp, mes, plm, service  # noqa: E402
from ._base import (  # noqa: E402
    REJECT_COLUMNS,
    Enforcement,
    EntityContract,
    ExportBreach,
    SystemContract,
    enforce,
)
from ._types import KINDS  # noqa: E402

SYSTEMS: dict[str, SystemContract] = {m.SYSTEM.system: m.SYSTEM for m in (plm, mes, erp, service)}
ENTITIES: dict[tuple[str, str], EntityContract] = {
    (e.system, e.entity): e for m in (plm, mes, erp, service) for e in m.ENTITIES
}


def entity(system: str, name: str) -> EntityContract:
    try:
        return ENTITIES[(system, name)]
    except KeyError:
        raise KeyError(f"no contract for {system}.{name}; known: {sorted(ENTITIES)}") from None


__all__ = [
    "ENTITIES",
    "KINDS",
    "REJECT_COLUMNS",
    "SYSTEMS",
    "Enforcement",
    "EntityContract",
    "ExportBreach",
    "SystemContract",
    "enforce",
    "entity",
]
