"""`server` and `deploy`: a local Prefect server with the workers, or the deployments alone."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from studio_nova.app.cli.output import JsonFlag, emit, interruption_reported, run_settings
from studio_nova.config import Settings
from studio_nova.errors import StudioNovaError

NightlyOut = Annotated[Optional[Path], typer.Option(help="run folder the nightly render works on")]
NightlyCron = Annotated[Optional[str], typer.Option(
    help="when the nightly render runs, 5-field cron in UTC (default: STUDIO_NOVA_NIGHTLY_CRON or 0 1 * * *)")]
TO_RENDER = "--nightly-out DIR (the run folder to render)"


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """SIGTERM and SIGINT ignored while inside (main thread only), then as they were."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _nightly_cron(given: str | None, settings: Settings) -> str:
    """--nightly-cron if given (checked like the setting), else STUDIO_NOVA_NIGHTLY_CRON."""
    if given is None:
        return settings.nightly_cron
    from studio_nova.config import validate_cron
    from studio_nova.errors import ConfigError

    try:
        return validate_cron(given)
    except ValueError as exc:
        raise ConfigError(f"--nightly-cron: {exc}") from None


def _nightly(cron: str, nightly_out: Path | None) -> dict[str, Any]:
    return {"cron": cron, "timezone": "UTC", "active": bool(nightly_out)}


def _register(orchestrator: Any, settings: Settings, nightly_out: Path | None, cron: str) -> Any:
    return orchestrator.register(settings, nightly_out=str(nightly_out.resolve()) if nightly_out else None,
                                 nightly_cron=cron)


def server(
    port: Annotated[Optional[int], typer.Option(help="UI/API port (default: STUDIO_NOVA_PREFECT_PORT or 4200)")] = None,
    host: Annotated[str, typer.Option(help="address the server listens on")] = "127.0.0.1",
    home: Annotated[Optional[Path], typer.Option(help="PREFECT_HOME of the server (default: Prefect's own)")] = None,
    logs: Annotated[Optional[Path], typer.Option(help="folder for the server's and workers' logs")] = None,
    nightly_out: NightlyOut = None,
    nightly_cron: NightlyCron = None,
    no_workers: Annotated[bool, typer.Option("--no-workers", help="only the server (workers run elsewhere)")] = False,
    as_json: JsonFlag = False,
) -> int:
    """A local Prefect server (UI) and the workers of the deployments; Ctrl-C (or SIGTERM) stops
    them all within a few seconds, and they end with this process even if it is killed."""
    import time

    from studio_nova.app.runner import load_orchestrator
    from studio_nova.app.server import LocalServer
    from studio_nova.workflow.render import prepare_folder

    settings = run_settings()
    cron = _nightly_cron(nightly_cron, settings)
    for folder, option in ((home, "--home"), (logs, "--logs")):
        if folder is not None:
            prepare_folder(folder, what=f"the {option} folder", fix=f"give {option} a folder you can write to")
    local = LocalServer(
        port=port or settings.prefect_port,
        host=host,
        home=home.resolve() if home else None,
        log_dir=logs.resolve() if logs else None,
        workers=() if no_workers else LocalServer.workers,
    )
    # SIGTERM and Ctrl-C reach here as KeyboardInterrupt (`main`'s handler, or Python's own).
    try:
        local.start_server()
        os.environ["PREFECT_API_URL"] = local.api_url
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        registered = _register(load_orchestrator("prefect"), settings, nightly_out, cron)
        names = registered.deployments
        local.start_workers()
        payload = {"ui": local.ui_url, "api": local.api_url, "deployments": names, "pools": registered.pools,
                   "nightly": _nightly(cron, nightly_out)}
        nightly = (f"nightly render of {nightly_out}: cron {cron!r} (UTC)" if nightly_out
                   else f"the nightly render is paused: start with {TO_RENDER}")
        emit(as_json, payload, f"Prefect UI: {local.ui_url}  (API {local.api_url}; Ctrl-C stops everything)\n"
             f"deployments: {', '.join(names)}\n{nightly}")
        sys.stdout.flush()
        while True:
            dead = local.dead_children()
            if dead:
                raise StudioNovaError(f"{', '.join(dead)} stopped unexpectedly; see the logs in "
                                      f"{local.log_dir or 'PREFECT_HOME/logs'}")
            time.sleep(1.0)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop a server, so exit status 0
        interruption_reported()
        print("stopping the Prefect server and workers", file=sys.stderr)
        return 0
    finally:
        with _signals_ignored():  # a second signal must not cut the stop short
            local.stop()


def deploy(nightly_out: NightlyOut = None, nightly_cron: NightlyCron = None, as_json: JsonFlag = False) -> int:
    """Register the deployments (and work pools) with the Prefect server."""
    from studio_nova.app.runner import require_server

    settings = run_settings()
    cron = _nightly_cron(nightly_cron, settings)
    orchestrator, url = require_server(settings)
    names = _register(orchestrator, settings, nightly_out, cron).deployments
    human = "registered: " + ", ".join(names) + f"\nnightly render: cron {cron!r} (UTC)"
    if not nightly_out:
        human += f"\nthe nightly render is paused until you deploy with {TO_RENDER}"
    emit(as_json, {"api": url, "deployments": names, "nightly": _nightly(cron, nightly_out)}, human)
    return 0
