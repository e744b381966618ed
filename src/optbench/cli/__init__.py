"""The command line: one module per command group, parsing and printing only. Each module exposes
``register(app)``; :mod:`optbench.cli.main` builds the application and holds the entry point
:func:`optbench.cli.main.main`. Shared helpers (errors to exit codes, common options) are in
:mod:`optbench.cli.common`, the technique options in :mod:`optbench.cli.techniques`."""
