"""Dagster orchestration of the digital thread: extraction, contracts, dbt thread, twins, publish."""
