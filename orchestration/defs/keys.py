"""Asset keys that several definition modules refer to."""

import dagster as dg

# One partitioned asset per unit's twin; it maintains all three twin tables.
TWIN_KEY = dg.AssetKey(["twin", "unit_twin"])
TWIN_KEYS = [TWIN_KEY]
WAREHOUSE_KEY = dg.AssetKey(["warehouse"])
