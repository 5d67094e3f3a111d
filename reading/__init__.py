"""The read side for people: what the command line, the HTTP API and the dashboard show, read one way.

Search over the indexes beside the warehouse (`reading.search`), feed health (`reading.feeds`)
and the embedder a query is embedded with (`reading.embedder`). It may import the pure library
(`extract/`) and the warehouse (`warehouse/`), which may not import each other, and never
Prefect, so the dashboard reads through it without pulling in the orchestration.
"""
