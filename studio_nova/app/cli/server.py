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
    gpu_workers: Annotated[int, typer.Option(
        min=1, help="GPU workers to start, one render slot each; worker i sees GPU i only")] = 1,
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
        gpu_workers=gpu_workers,
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


POOLS = {"gpu": "studio-nova-gpu", "cpu": "studio-nova-cpu"}


def worker(
    pool: Annotated[str, typer.Option(help="gpu (renders, one at a time) or cpu (ingest, keyframes, reviews, dispatch, "
                                            "conform)")] = "gpu",
    name: Annotated[Optional[str], typer.Option(help="the worker's name in the UI (default: pool, host and process)")]
    = None,
    limit: Annotated[Optional[int], typer.Option(
        min=1, help="runs at once (gpu default 1: one render slot per GPU; cpu default: no limit)")] = None,
) -> int:
    """A worker of a farm node: `prefect worker start` on the studio-nova pool, taking its
    settings from the environment (PREFECT_API_URL, STUDIO_NOVA_DATABASE_URL, STUDIO_NOVA_DEVICE,
    CUDA_VISIBLE_DEVICES, STUDIO_NOVA_LEASE_SECONDS). Runs until stopped (SIGTERM, Ctrl-C); a render
    it was running is taken over by another worker once its lease runs out, resuming at its first
    unfinished chunk."""
    import socket
    import subprocess

    from studio_nova.app.server import die_with_parent, find_local_api, worker_args
    from studio_nova.errors import ConfigError

    if pool not in POOLS:
        raise ConfigError(f"--pool must be gpu or cpu, got {pool!r}")
    settings = run_settings()
    api = os.environ.get("PREFECT_API_URL") or find_local_api(settings.prefect_port)
    if not api:
        raise ConfigError(
            "no Prefect server: set PREFECT_API_URL to the farm's API (http://HOST:4200/api), or start "
            "`studio-nova server` on this machine"
        )
    if not settings.database_url:
        print("warning: STUDIO_NOVA_DATABASE_URL is not set, so each output folder keeps its own SQLite store; "
              "a farm's workers must share one store (PostgreSQL)", file=sys.stderr)
    pool_name = POOLS[pool]
    limit = limit if limit is not None else (1 if pool == "gpu" else None)
    name = name or f"{pool_name}-{socket.gethostname()}-{os.getpid()}"
    env = dict(os.environ, PREFECT_API_URL=api)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    command = [sys.executable, "-m", "prefect", *worker_args(pool_name, name, limit)]
    print(f"{name}: worker of {pool_name} (limit {limit or 'none'}) on {api}", file=sys.stderr)
    sys.stderr.flush()
    # A child in our process group: a SIGTERM / SIGINT to this command (or its group) reaches the
    # worker and its flow runs too; and it ends with us even if we are killed.
    process = subprocess.Popen(command, env=env, preexec_fn=die_with_parent())
    try:
        return process.wait()
    except KeyboardInterrupt:
        with _signals_ignored():
            process.send_signal(signal.SIGTERM)  # told once more, in case only we were signalled
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        interruption_reported()
        return 0
