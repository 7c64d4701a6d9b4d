"""Dagster definitions, one folder per owning system plus the thread, twin and publish layers."""
