"""The render step: what identifies a render (its plan), whether a shot needs one, and rendering it
chunk by chunk through the shot's propagator, recorded in the store.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from studio_nova.atomic import remove_partials
from studio_nova.config import Settings
from studio_nova.cut.plan import plan_chunks
from studio_nova.errors import LeaseLost, OutputError, PropagationError, ReviewError, StudioNovaError
from studio_nova.media.fingerprint import (
    file_fingerprint,
    fingerprint_paths,
    json_digest,
)
from studio_nova.plugin_api.registry import PROPAGATORS, load_propagator, settings_options
from studio_nova.render.shot import EncodeSettings, ProgressFn, RenderStopped, StopFlag, render_shot
from studio_nova.store import (
    ChunkRecord,
    RenderRecord,
    ShotRecord,
    Store,
)
from studio_nova.workflow.keyframes import approved_keyframes, effective_edit, media_view
from studio_nova.workflow.leases import (
    HeldLease,
    dead_local_holder,
    free_gpu_memory,
    is_transient,
    lease_length,
)
from studio_nova.workflow.workspace import Workspace

log = logging.getLogger(__name__)


_WHY = {
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted there",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.ENOENT: "the file system does not allow a folder there",
}


def prepare_folder(folder: str | Path, *, what: str, fix: str) -> Path:
    """`folder`, created (with its parents) if needed and proven writable by writing a file in it;
    an OutputError naming the path, saying why, and saying what to do (`fix`) otherwise. `what`
    names the folder for a person ("the output folder (--out)")."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} is a file, not a folder; {fix}", path=folder)
    blocker = next((p for p in reversed(folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{what} cannot be created: {blocker} is a file, not a folder; {fix}", path=folder)
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".studio-nova-write-check-"):
            pass
    except OSError as exc:
        why = _WHY.get(exc.errno, exc.strerror or str(exc))
        verb = "cannot be written" if existed else "cannot be created"
        raise OutputError(f"{what} {verb}: {why}; {fix}", path=folder) from None
    return folder


@dataclass
class _StoreLedger:
    """The chunk ledger of one render in the store, for the worker holding the shot's lease.
    Each chunk is claimed before it is rendered: a chunk a lost worker left running is taken over
    at once (the lease says that worker is gone), and a chunk out of attempts fails the shot."""

    store: Store
    shot: str
    chunks: list[ChunkRecord]
    done: set[int]
    worker: str

    def is_done(self, index: int) -> bool:
        return index in self.done

    def start(self, index: int) -> None:
        chunk = self.chunks[index]
        again = index in self.done  # recorded done, but its files are gone: rendered again
        if self.store.claim_chunk(chunk.id, self.worker, stale_after=timedelta(0), again=again) is not None:
            self.done.discard(index)
            return
        now = {c.index: c for c in self.store.chunks(chunk.render_id)}[index]
        if now.status == "done":
            raise LeaseLost(f"chunk {index} was finished by {now.worker} meanwhile", shot=self.shot)
        if self.store.max_attempts is not None and now.attempts >= self.store.max_attempts:
            last = now.error or f"none recorded: the worker rendering it ({now.worker}) was lost each time"
            raise PropagationError(
                f"chunk {index} (source frames {now.first_frame}-{now.last_frame}) was attempted "
                f"{now.attempts} times without finishing; the last error: {last}. Fix the cause and run "
                "again: a rerun gives its unfinished chunks their attempts back",
                shot=self.shot, frame=now.first_frame,
            )
        raise LeaseLost("its render was closed while this worker rendered it (its request changed)", shot=self.shot)

    def complete(self, index: int, output: Path) -> None:
        self.store.complete_chunk(self.chunks[index].id, str(output), worker=self.worker)
        self.done.add(index)

    def fail(self, index: int, error: str) -> None:
        self.store.fail_chunk(self.chunks[index].id, error, worker=self.worker)


#: Bump when the render code changes what it writes for the same inputs, so that renders made
#: by the older code are no longer taken for current ones.
RENDER_FORMAT = 1
MASTER_CODEC = "prores_422_hq"
#: Shots `render` looks at: approved ones, interrupted renders, and rendered ones whose render may
#: no longer match what decides its pixels.
RENDERABLE = ("approved", "rendering", "rendered", "conformed")


@dataclass(frozen=True)
class RenderPlan:
    """Everything that decides a render's pixels, and its hash (the render's identity)."""

    backend: str
    chunks: list[tuple[int, int]]
    edit: dict[str, Any]
    encode: EncodeSettings
    inputs: dict[str, Any]
    identity: str


def render_plan(ws: Workspace, shot: ShotRecord, backend: str | None = None) -> RenderPlan:
    """The identity a render of the shot would have now: media fingerprint, source range, edit
    request (with a rejection's new instruction / seed) and the files it names, the approved
    keyframes' content, the backend and its settings, the chunk plan and the encoder settings.
    Two renders with the same identity have the same pixels; nothing else is compared."""
    backend = backend or ws.settings.backend
    chunks = plan_chunks(
        shot.first_frame, shot.last_frame, length=ws.settings.chunk_length, overlap=ws.settings.chunk_overlap
    )
    edit = effective_edit(ws, shot)
    encode = EncodeSettings(ws.settings.prores_qscale, ws.settings.proxy_crf)
    inputs = {
        "format": RENDER_FORMAT,
        "media": file_fingerprint(shot.media),
        "range": [shot.first_frame, shot.last_frame],
        "edit": fingerprint_paths(edit),
        "keyframes": _keyframes_digest(ws, shot),
        "backend": {"name": backend, "options": fingerprint_paths(_propagator_options(ws.settings, backend))},
        "chunks": [list(c) for c in chunks],
        "encode": {"codec": MASTER_CODEC, **asdict(encode)},
    }
    return RenderPlan(backend, [tuple(c) for c in chunks], edit, encode, inputs, json_digest(inputs))


def _keyframes_digest(ws: Workspace, shot: ShotRecord) -> str:
    """The approved keyframes' content: the bytes of every edited image and mask, by frame."""
    digest = hashlib.sha256()
    for keyframe in ws.store.keyframes(shot.id):
        digest.update(f"{keyframe.source_frame}\n".encode())
        for path in (keyframe.edited_path, keyframe.mask_path):
            try:
                digest.update(Path(path).read_bytes() if path else b"-")
            except OSError as exc:
                raise ReviewError(
                    f"approved keyframe file cannot be read ({exc.strerror or exc}); re-edit the "
                    "shot's keyframes", shot=shot.name, frame=keyframe.source_frame, path=path,
                ) from exc
    return digest.hexdigest()


def _usable(render: RenderRecord | None) -> bool:
    return render is not None and bool(render.path) and Path(render.path).is_file()


def _is_current(ws: Workspace, shot: ShotRecord, plan: RenderPlan) -> bool:
    """Whether the shot is rendered and its render has the identity a render would have now."""
    current = ws.store.current_render(shot.id)
    return (
        shot.status in ("rendered", "conformed")
        and current is not None
        and current.identity == plan.identity
        and _usable(current)
    )


def needs_render(ws: Workspace, shot_id: int, backend: str | None = None) -> bool:
    """Whether `render` would do anything for the shot: approved, interrupted, or rendered with
    a render that no longer matches (so a rerun queues GPU work only for those)."""
    shot = ws.store.shot(shot_id)
    if shot.status in ("approved", "rendering"):
        return True
    if shot.status not in RENDERABLE:
        return False
    try:
        return not _is_current(ws, shot, render_plan(ws, shot, backend))
    except StudioNovaError:
        return True  # its inputs cannot be read now: the render step reports why, on the shot


def render(
    ws: Workspace, shot_id: int, *, backend: str | None = None, progress: ProgressFn | None = None,
    stop: StopFlag | None = None,
) -> ShotRecord:
    """Bring an approved shot's render up to date with what decides its pixels.

    The shot's current render stands while its identity matches (nothing is rendered); a
    complete render with the same identity elsewhere in the store (the same shot in another cut)
    is linked, not rendered again; an interrupted render of the same identity resumes at its
    first unfinished chunk; anything else renders a new version.

    All of it happens under the shot's render lease (`leases.HeldLease`): while another worker
    holds a live lease on the shot, nothing is done and the shot is returned as it stands. A
    transient failure (`leases.is_transient`) retries the chunk, up to the store's attempts;
    any other failure is raised for the caller to fail the shot with (`run.guarded`).

    With `stop` set the render ends at the next chunk boundary with `RenderStopped`: the shot
    stays `rendering` and its render open, so the next call resumes it. A lease lost to another
    worker ends it the same way, raising `LeaseLost`."""
    shot = ws.store.shot(shot_id)
    if shot.status not in RENDERABLE:
        return shot
    lease = lease_length(ws.settings)
    if ws.store.claim_shot(shot_id, ws.worker, lease=lease) is None:
        held = ws.store.shot(shot_id)
        if dead_local_holder(held.worker):
            log.info("%s: its lease holder %s is a process of this machine that is gone; taken over",
                     held.name, held.worker)
            if ws.store.claim_shot(shot_id, ws.worker, lease=lease, take_over_from=held.worker) is None:
                return ws.store.shot(shot_id)
        else:
            log.info("%s is being rendered by %s (lease until %s); left to it", held.name, held.worker,
                     held.lease_expires_at)
            return held
    with HeldLease(ws.store, shot_id, ws.worker, lease, stop=stop) as held:
        attempt = 0
        while True:
            attempt += 1
            try:
                return _render_held(ws, shot_id, backend=backend, progress=progress, stop=held)
            except RenderStopped:
                if held.lost is not None:
                    raise held.lost from None
                raise
            except Exception as exc:
                if held.lost is not None:
                    raise held.lost from exc
                if not is_transient(exc) or attempt >= ws.settings.render_attempts:
                    raise
                delay = min(2.0 ** (attempt - 1), 30.0)
                log.warning("%s: %s; a transient failure, retried in %.0f s (attempt %d of %d)",
                            shot.name, exc, delay, attempt + 1, ws.settings.render_attempts)
                free_gpu_memory()
                if _wait(held, delay):  # stopped (or lost the lease) while waiting to retry
                    if held.lost is not None:
                        raise held.lost from exc
                    open_render = ws.store.latest_render(shot_id, complete_only=False)
                    chunks = ws.store.chunks(open_render.id) if open_render else []
                    raise RenderStopped(shot.name, sum(c.status == "done" for c in chunks), len(chunks)) from exc


def _wait(flag: HeldLease, seconds: float) -> bool:
    """Sleep `seconds` unless the flag gets set first (True then)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if flag.is_set():
            return True
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    return flag.is_set()


def _render_held(
    ws: Workspace, shot_id: int, *, backend: str | None, progress: ProgressFn | None, stop: StopFlag
) -> ShotRecord:
    """`render`'s work, with the shot's lease held."""
    shot = ws.store.shot(shot_id)
    if shot.status not in RENDERABLE:
        return shot
    plan = render_plan(ws, shot, backend)
    if _is_current(ws, shot, plan):
        return shot
    same = ws.store.find_render(plan.identity)
    if _usable(same):
        log.info("%s: render %s has the same identity; linked, nothing rendered", shot.name, same.path)
        return ws.store.link_render(shot.id, same.id)
    propagator = load_propagator(plan.backend, ws.settings)
    info = media_view(Path(shot.media), shot.rate, ws.settings, shot=shot.name)
    record = ws.store.start_render(shot.id, codec=MASTER_CODEC, identity=plan.identity, inputs=plan.inputs)
    chunk_rows = ws.store.plan_chunks(record.id, plan.chunks)
    ledger = _StoreLedger(ws.store, shot.name, chunk_rows, {c.index for c in chunk_rows if c.status == "done"},
                          ws.worker)
    master, proxy, work = ws.render_paths(shot, record.version)
    for output in (master, proxy):  # the shot is ours now (we hold its lease): what a killed writer left goes
        for stale in remove_partials(output):
            log.info("%s: removed %s, left by an interrupted render", shot.name, stale)
    fix = "make it writable (or free space) and run again, or run with another --out"
    try:
        # Before any chunk: a folder the render cannot write fails the shot now, not after its last chunk.
        for folder, what in ((master.parent, "the shot's renders folder"), (work, "the shot's work folder")):
            prepare_folder(folder, what=what, fix=fix)
        result = render_shot(
            shot=shot.name,
            info=info,
            first_frame=shot.first_frame,
            last_frame=shot.last_frame,
            chunks=plan.chunks,
            keyframes=approved_keyframes(ws, shot),
            propagator=propagator,
            work_dir=work,
            master_path=master,
            proxy_path=proxy,
            ledger=ledger,
            encode=plan.encode,
            progress=progress,
            instruction=str(plan.edit.get("instruction") or ""),
            guide=_background_guide(ws, shot, plan.edit, info),
            identity=plan.identity,
            stop=stop,
        )
    # A failure leaves the render open: the shot is marked failed with the reason, and the next run
    # of the same identity resumes at the first unfinished chunk (its finished chunks are kept);
    # a changed request or fix of the inputs changes the identity, and the open render is closed.
    except OSError as exc:  # a file of the render could not be written (or read back): say which and why
        raise OutputError(f"a file of the render cannot be written: {_WHY.get(exc.errno, exc.strerror or str(exc))}; "
                          f"{fix}", shot=shot.name, path=exc.filename) from exc
    if stop.is_set():  # lost the lease while assembling: the other worker records the render
        raise RenderStopped(shot.name, len(plan.chunks), len(plan.chunks))
    qc = dict(result.qc, backend=plan.backend, version=record.version)
    ws.store.finish_render(record.id, path=str(result.master), proxy_path=str(result.proxy), qc=qc)
    shutil.rmtree(work, ignore_errors=True)  # our own intermediates; the master holds every frame
    return ws.store.shot(shot.id)


def _background_guide(ws: Workspace, shot: ShotRecord, edit: dict[str, Any], info: Any) -> Any:
    """For a background replacement, the per-chunk composite guide; None for other edits."""
    if edit.get("kind", "edit") != "background":
        return None
    from studio_nova.cut.background_request import BackgroundRequest
    from studio_nova.render.background import BackgroundReplacement

    replacement = BackgroundReplacement(
        BackgroundRequest.from_params(edit.get("params") or {}),
        shot=shot.name, media=info, first_frame=shot.first_frame, last_frame=shot.last_frame,
        seed=int(edit.get("seed") or 0), instruction=str(edit.get("instruction") or ""),
        cache_dir=ws.generated_dir(shot),
        settings=ws.settings,
    )
    return lambda start, frames: replacement.fuse(frames, start).guide()


def _propagator_options(settings: Settings, backend: str) -> dict[str, Any]:
    """The options the backend draws from the workspace's settings (not the environment's), as
    the propagator declares them (`settings_options`, docs/editors.md section 5): part of the
    render's identity, so that a change of them makes a new render."""
    return settings_options(PROPAGATORS, backend, settings)


def linked_render(ws: Workspace, shot: ShotRecord) -> RenderRecord | None:
    """The render the shot's clip is conformed to, while it stands (rendered or conformed)."""
    if shot.status not in ("rendered", "conformed"):
        return None
    return ws.store.current_render(shot.id)
