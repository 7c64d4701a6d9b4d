"""Column annotations shared by the system contracts, so every model spells types the same way."""

import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine

Timestamp = pd.DatetimeTZDtype
Date = pandas_engine.Date
Int = pd.Int64Dtype


def ts(**kwargs):
    """A UTC timestamp column (spec: ISO 8601 in UTC; Parquet timestamp[us, tz=UTC])."""
    return pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"}, **kwargs)


def one_of(*values: str, nullable: bool = False, description: str | None = None):
    return pa.Field(isin=list(values), nullable=nullable, description=description,
                    metadata={"explain": "must be one of " + ", ".join(values)})
