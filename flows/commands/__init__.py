"""The `newswatch` commands, one module per group; `flows/cli.py` registers them."""
