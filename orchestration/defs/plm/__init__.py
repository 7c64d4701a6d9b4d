"""The plm source system: its raw assets (and, later, the sensors that watch its exports)."""
