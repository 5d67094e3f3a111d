"""The Streamlit dashboard; it reads through `warehouse.queries` only."""
