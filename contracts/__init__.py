"""Data contracts of the four owning systems, as plain pandera models plus ownership metadata.

One place defines each contract; Dagster assets, checks, docs and ODCS exports read it from here.
"""

from . import erp, mes, plm, service
from ._base import (
    REJECT_COLUMNS,
    Enforcement,
    EntityContract,
    ExportBreach,
    SystemContract,
    enforce,
)
from ._types import KINDS

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
