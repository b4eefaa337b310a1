"""The `studio-nova` command line (typer + rich), one module per command group.

`app` assembles the groups and holds `main`, the console script; `output` is what every command
shares (`--json`, tables, errors); `progress` is the live display of an in-process run.
"""

from studio_nova.app.cli.app import main

__all__ = ["main"]
