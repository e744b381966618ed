"""Runs: the plan (content-hashed ids), the store, claims, workers and the executor, shared by
``optbench.search`` and ``optbench.study`` (see docs/architecture.md)."""
