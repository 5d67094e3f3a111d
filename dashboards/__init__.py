"""The Streamlit dashboard; it only reads, through the named queries of `warehouse/` and the read side of `reading/` (see `dashboards.reads`)."""
