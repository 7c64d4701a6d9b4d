"""Column annotations shared by the system contracts, so every model spells types the same way,
and the translation of each column kind into the vocabularies of the tools that carry it."""

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.engines import pandas_engine

Timestamp = pd.DatetimeTZDtype
Date = pandas_engine.Date
Int = pd.Int64Dtype


def ts(**kwargs):
    """A UTC timestamp column (spec: ISO 8601 in UTC; Parquet timestamp[us, tz=UTC])."""
    return pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"}, **kwargs)


def rule(description: str, violation: str):
    """A rule across columns, run twice from one place: by pandera on every export (the decorated
    method) and, as SQL, by whoever tests the landed tables against the ODCS contract
    (`violation`: the DuckDB condition a breaking row meets; datacontract-cli counts such rows)."""
    def decorate(fn):
        fn.violation = violation
        return pa.dataframe_check(description=description)(fn)
    return decorate


def one_of(*values: str, nullable: bool = False, description: str | None = None):
    return pa.Field(isin=list(values), nullable=nullable, description=description,
                    metadata={"explain": "must be one of " + ", ".join(values)})


# The one translation of a contract's column kinds into each tool's vocabulary: Arrow (raw Delta
# tables), DuckDB, Dagster's column schema, ODCS logical types, and which Parquet types a
# typed export may carry for the kind.
@dataclass(frozen=True)
class KindTypes:
    arrow: pyarrow.DataType
    duckdb: str
    dagster: str
    odcs: str
    parquet_accepts: Callable[[pyarrow.DataType], bool]


_t = pyarrow.types
KINDS: dict[str, KindTypes] = {
    "str": KindTypes(pyarrow.string(), "VARCHAR", "string", "string",
                     lambda t: _t.is_string(t) or _t.is_large_string(t) or _t.is_dictionary(t)),
    "int": KindTypes(pyarrow.int64(), "BIGINT", "integer", "integer", _t.is_integer),
    "float": KindTypes(pyarrow.float64(), "DOUBLE", "float", "number",
                       lambda t: _t.is_floating(t) or _t.is_integer(t) or _t.is_decimal(t)),
    "timestamp": KindTypes(pyarrow.timestamp("us", tz="UTC"), "TIMESTAMPTZ", "timestamp", "timestamp",
                           _t.is_timestamp),
    "date": KindTypes(pyarrow.date32(), "DATE", "date", "date", _t.is_date),
}
