"""Holding a shot while rendering it: the lease's heartbeat, and which failures are worth a retry.

A worker renders a shot only under its lease (`studio_nova.store.leases`). `HeldLease` renews it
from a background thread every quarter of its length, so a worker busy in one long chunk (a GPU
step, an encoder) still says it is alive; a worker that dies stops renewing and the shot is taken
over once the lease runs out. If the heartbeat learns the shot was taken over (`LeaseLost`, the
worker was thought lost) the lease reads as a set stop flag: the render ends at the next chunk
boundary, recording nothing more.

`is_transient` sorts failures: a GPU out of memory, an encoder killed by the system, a dropped
store connection may not happen again and are retried (the chunk's attempts are counted in the
store, across workers); anything else is about the shot and fails it once, with its error.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from datetime import timedelta
from types import TracebackType
from typing import Self

from studio_nova.config import Settings
from studio_nova.errors import LeaseLost, StoreError, TransientError
from studio_nova.render.shot import StopFlag, stop_requested
from studio_nova.store import Store

log = logging.getLogger(__name__)

_OUT_OF_MEMORY = ("CUDA out of memory", "CUDA error: out of memory", "HIP out of memory")


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a failure that may not happen again: a
    `TransientError` (an encoder killed by a signal, ...) or a GPU out of memory."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, LeaseLost):
            return False
        if isinstance(current, TransientError):
            return True
        if type(current).__name__ == "OutOfMemoryError" or any(s in str(current) for s in _OUT_OF_MEMORY):
            return True
        current = current.__cause__ or current.__context__
    return False


def lease_length(settings: Settings) -> timedelta:
    """How long a render lease holds without a heartbeat (`STUDIO_NOVA_LEASE_SECONDS`)."""
    return timedelta(seconds=settings.lease_seconds)


def worker_name(*parts: str) -> str:
    """A worker's name in leases and chunk claims: this host and process, then `parts` (a flow
    run's id). The host and process let a rerun on the same machine see that a holder is dead."""
    return ":".join([socket.gethostname(), str(os.getpid()), *parts])


def dead_local_holder(holder: str | None) -> bool:
    """Whether `holder` (a `worker_name`) is a process of this host that no longer runs: its lease
    can be taken over now instead of when it runs out (a run killed and started again)."""
    host, _, rest = (holder or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A process that has exited but not been reaped by its parent holds nothing any more."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def free_gpu_memory() -> None:
    """After a GPU out-of-memory, hand the allocator's cache back before the retry (only when
    torch is already loaded: this module never imports it)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class HeldLease:
    """A shot's render lease, renewed in the background while the `with` block runs and released
    at its end. Also a stop flag (`is_set`): set when `stop` is, or once the lease is lost."""

    def __init__(
        self, store: Store, shot_id: int, worker: str, lease: timedelta, *, stop: StopFlag | None = None
    ) -> None:
        self.store, self.shot_id, self.worker, self.lease = store, shot_id, worker, lease
        self.stop = stop
        self.lost: LeaseLost | None = None
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-shot-{shot_id}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._ended.set()
        self._thread.join(timeout=30)
        if self.lost is None:
            try:
                self.store.release_shot(self.shot_id, self.worker)
            except StoreError as err:  # it runs out on its own; say so and go on
                log.warning("could not release the lease on shot %s: %s", self.shot_id, err)

    def is_set(self) -> bool:
        return self.lost is not None or stop_requested(self.stop)

    def _beat(self) -> None:
        interval = max(self.lease.total_seconds() / 4, 0.05)
        while not self._ended.wait(interval):
            try:
                self.store.renew_lease(self.shot_id, self.worker, lease=self.lease)
            except LeaseLost as lost:
                log.warning("%s", lost)
                self.lost = lost
                return
            except StoreError as err:  # a dropped connection: try again at the next beat
                log.warning("lease heartbeat of shot %s failed (%s); trying again", self.shot_id, err)
