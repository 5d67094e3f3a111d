"""Orchestration: the Prefect flows, their settings and the `newswatch` command line."""
