"""Imported by `thread serve`'s fork server, after the definitions (orchestration/services.py),
and nowhere else: every run forked from it starts with dbt warm (defs/dbt_in_process.warm) and
matplotlib imported (the publish's chart: 0.5 s in a fresh process)."""

from . import report
from .defs import dbt_in_process

dbt_in_process.warm()
report.plotting()
