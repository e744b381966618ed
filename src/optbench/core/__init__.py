"""The contracts every part of optbench builds on: Task, Recipe, RunResult, errors, the strict
Registry and the key=value option parser (see docs/architecture.md)."""
