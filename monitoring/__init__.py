"""Monitoring: which articles watches match, when a watch alerts, and what alerts and digests say and how they are sent.

A pure library beside `extract/` (which it may use): no Prefect, no DuckDB. `flows/` reads what a
decision needs from `warehouse/`, decides here and stores the outcome back there.
"""
