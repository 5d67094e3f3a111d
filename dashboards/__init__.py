"""The Streamlit dashboard; it only reads, through the named queries of `warehouse/` (see `dashboards.reads`)."""
