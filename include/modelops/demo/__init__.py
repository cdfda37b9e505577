"""The demo: generated data, drift and fault injection around the product's own DAG runs (``make demo`` and its kin)."""
