"""The command line: one module per command group, parsing and printing only (see
docs/architecture.md). The entry point is :func:`optbench.cli.main.main.main`."""
