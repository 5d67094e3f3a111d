"""Everything that touches DuckDB: connections, migrations, idempotent loads and named queries."""
