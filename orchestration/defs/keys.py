"""Asset keys that several definition modules refer to."""

import dagster as dg

from ..twins import TABLES

TWIN_KEYS = [dg.AssetKey(["twin", t]) for t in TABLES]
WAREHOUSE_KEY = dg.AssetKey(["warehouse"])
