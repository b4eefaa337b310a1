"""A local Prefect server and the workers the project's deployments need, as child processes.

`studio-nova server` is what a person runs on one workstation: the UI, a CPU worker (ingest,
keyframes, review, conform) and a GPU worker with one render slot. Everything is started as a
subprocess in its own process group, so stopping (Ctrl-C, SIGTERM, or a test's cleanup) ends
exactly the processes started here, children included: every group is sent SIGTERM at once, and
what is still alive a few seconds later SIGKILL. On Linux each child also gets a parent-death
signal (`prctl(PR_SET_PDEATHSIG, SIGTERM)`), so even a parent killed with SIGKILL takes its server
and workers with it instead of leaving workers polling a dead API. This module runs the `prefect`
command line and never imports Prefect itself.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from studio_nova.errors import StudioNovaError

CPU_POOL = "studio-nova-cpu"
GPU_POOL = "studio-nova-gpu"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and for a second server beside 4200)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers at `url` (…/api)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200 and json.loads(response.read() or b"false") is True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def find_local_api(port: int, host: str = "127.0.0.1") -> str | None:
    """The API of a server started by `studio-nova server` on this machine, if one is up."""
    url = api_url(host, port)
    return url if is_healthy(url, timeout=1.0) else None


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _libc() -> ctypes.CDLL | None:
    """The C library, loaded in the parent (never between fork and exec); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when this process dies, however it dies
    (SIGKILL included): Linux's parent-death signal. None where there is no such thing. The
    signal follows the *thread* that starts the child, so start children from a thread that lives
    as long as they should (the main thread, in the CLI)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "prctl"):
        return None
    parent = os.getpid()
    prctl = libc.prctl

    def preexec() -> None:  # runs in the child, after fork and setsid, before exec
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


@dataclass
class _Child:
    name: str
    process: subprocess.Popen
    log: IO[bytes]


@dataclass
class LocalServer:
    """A Prefect server plus workers; use as a context manager, or `start()` / `stop()`."""

    port: int
    host: str = "127.0.0.1"
    home: Path | None = None  # PREFECT_HOME of the server (its SQLite database lives there)
    log_dir: Path | None = None
    workers: Sequence[tuple[str, int | None]] = ((CPU_POOL, None), (GPU_POOL, 1))
    #: GPU workers to start (each with one render slot); with more than one, worker i sees only
    #: GPU i (CUDA_VISIBLE_DEVICES), so a workstation with N GPUs renders N shots at once.
    gpu_workers: int = 1
    env: Mapping[str, str] | None = None
    startup_timeout: float = 120.0
    _children: list[_Child] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return api_url(self.host, self.port)

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def child_env(self) -> dict[str, str]:
        """The environment of the server, its workers and every flow run they start."""
        env = dict(os.environ if self.env is None else self.env)
        env["PREFECT_API_URL"] = self.api_url
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        env["PREFECT_UI_API_URL"] = self.api_url
        env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
        if self.home is not None:
            env["PREFECT_HOME"] = str(self.home)
        # Prefect's own database: SQLite in PREFECT_HOME unless PREFECT_API_DATABASE_CONNECTION_URL
        # (passed through) names PostgreSQL. No SQLite timeout is set here on purpose: the occasional
        # "database is locked" on worker heartbeats fails without waiting, whatever the timeout
        # (deploy/README.md, "Prefect's own database").
        return env

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> _Child:
        log_dir = self.log_dir or (self.home or Path.cwd()) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", *args],
            env={**self.child_env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends it and its flow runs
            preexec_fn=die_with_parent(),  # and it ends with us, even when we are SIGKILLed
        )
        child = _Child(name, process, log)
        self._children.append(child)
        return child

    def start_server(self) -> None:
        if is_healthy(self.api_url, timeout=1.0):
            raise StudioNovaError(
                f"a Prefect server already answers on {self.ui_url}; use it, or pick another port"
            )
        if self.home is not None:
            self.home.mkdir(parents=True, exist_ok=True)
        server = self._spawn("server", ["server", "start", "--host", self.host, "--port", str(self.port)])
        deadline = time.monotonic() + self.startup_timeout
        while not is_healthy(self.api_url):
            if server.process.poll() is not None:
                self.stop()
                raise StudioNovaError(
                    f"the Prefect server exited with status {server.process.returncode}; "
                    f"see {server.log.name}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise StudioNovaError(f"the Prefect server did not answer within {self.startup_timeout:.0f} s")
            time.sleep(0.5)

    def start_workers(self) -> None:
        for pool, limit in self.workers:
            copies = self.gpu_workers if pool == GPU_POOL else 1
            for index in range(copies):
                name = f"{pool}-local" if copies == 1 else f"{pool}-local-{index}"
                env = {"CUDA_VISIBLE_DEVICES": str(index)} if copies > 1 else None
                self._spawn(f"worker-{name}", worker_args(pool, name, limit), env)

    def start(self) -> "LocalServer":
        self.start_server()
        self.start_workers()
        return self

    def dead_children(self) -> list[str]:
        return [c.name for c in self._children if c.process.poll() is not None]

    def stop(self, timeout: float = 3.0) -> None:
        """End every process group started here, all at once: SIGTERM to each group, up to
        `timeout` seconds for them to go, then SIGKILL to each group (stragglers and flow runs
        left in it included)."""
        children = list(reversed(self._children))  # workers first (their runs), then the server
        for child in children:
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in children:
            _signal_group(child.process, signal.SIGKILL)
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
                pass
            child.log.close()
        self._children.clear()

    def child_pids(self) -> list[int]:
        """The process ids of the server and workers started here (for checks and tests)."""
        return [c.process.pid for c in self._children]

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def worker_args(pool: str, name: str | None, limit: int | None) -> list[str]:
    """The `prefect` arguments of a process worker of `pool` (after `python -m prefect`)."""
    args = ["worker", "start", "--pool", pool, "--type", "process"]
    if name:
        args += ["--name", name]
    if limit is not None:
        args += ["--limit", str(limit)]
    return args


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """Signal the process group we created for this child (its pid is the group id)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
