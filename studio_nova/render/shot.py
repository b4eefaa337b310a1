"""Render one shot: propagate chunk by chunk, blend overlaps, encode, assemble, QC.

Each chunk's committed frames are encoded as a ProRes segment in a work folder, and the frames it
shares with the next chunk are kept losslessly (its tail) as that chunk's anchors, until the next
chunk is done. A ledger (the store, in the pipeline) records finished chunks, so an interrupted
render resumes at the first unfinished chunk.

Memory does not grow with the shot's length: a chunk's source frames are decoded when it is
rendered, only the keyframes inside its range are taken from `keyframes` (which may load each
on access), and what stays on disk between chunks is one tail.
The master is the stream-copy concatenation of the segments (one generation of codec loss), written
under a temporary name and renamed; the H.264 proxy is made from the master.

A caller that wants to stop a render early (the application, on SIGTERM / Ctrl-C) passes a `stop`
flag; the render checks it between chunks and raises `RenderStopped` with every finished chunk
recorded, so a rerun resumes after them. The library never installs signal handlers itself.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from studio_nova.atomic import atomic_path, write_text
from studio_nova.errors import PluginError, PropagationError, StudioNovaError
from studio_nova.media.decode import read_frames
from studio_nova.media.encode import VideoWriter, concat, make_proxy
from studio_nova.media.frames import to_float
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import probe
from studio_nova.media.timecode import frames_to_timecode
from studio_nova.plugin_api.editing import EditedKeyframe
from studio_nova.plugin_api.propagation import ChunkInput, ChunkOutput, CompositeGuide, Propagator

log = logging.getLogger(__name__)

SEAM_PSNR_CAP = 100.0  # dB reported when two chunks agree exactly on their overlap


class StopFlag(Protocol):
    """A request to stop early (a `threading.Event` is one): checked between chunks."""

    def is_set(self) -> bool: ...


class RenderStopped(Exception):
    """The render stopped early because its `stop` flag was set. Every finished chunk is in the
    ledger and nothing half-written has a real name, so a rerun resumes at the first unfinished
    chunk. Not a StudioNovaError on purpose: it is no failure, and a shot must not be marked
    failed for it (`workflow.guarded` passes it on)."""

    def __init__(self, shot: str, chunks_done: int, chunks: int) -> None:
        self.shot, self.chunks_done, self.chunks = shot, chunks_done, chunks
        super().__init__(f"shot {shot!r}: render stopped on request after {chunks_done} of {chunks} chunks; "
                         "run again to resume")


def stop_requested(stop: StopFlag | None) -> bool:
    return stop is not None and stop.is_set()


class ChunkLedger(Protocol):
    """Where chunk progress is recorded (the store in the pipeline; a dict in tests)."""

    def is_done(self, index: int) -> bool: ...

    def start(self, index: int) -> None: ...

    def complete(self, index: int, output: Path) -> None: ...

    def fail(self, index: int, error: str) -> None: ...


@dataclass
class MemoryLedger:
    """A ledger kept in memory: renders that need no resume (tests, one-off previews)."""

    done: set[int] = field(default_factory=set)

    def is_done(self, index: int) -> bool:
        return index in self.done

    def start(self, index: int) -> None:
        pass

    def complete(self, index: int, output: Path) -> None:
        self.done.add(index)

    def fail(self, index: int, error: str) -> None:
        self.done.discard(index)


@dataclass(frozen=True)
class EncodeSettings:
    prores_qscale: int = 4
    proxy_crf: int = 20


@dataclass(frozen=True)
class RenderResult:
    master: Path
    proxy: Path
    frames: int
    qc: dict


@dataclass(frozen=True)
class RenderProgress:
    """Where one shot's render stands. An observer hears it once before the first chunk this
    render works on (a resumed render starts past 0) and after every chunk it finishes."""

    shot: str
    chunk_index: int  # chunks finished, of `chunks`
    chunks: int
    frames_done: int  # source frames those chunks committed, of `frames_total`
    frames_total: int


@runtime_checkable
class RenderObserver(Protocol):
    """A progress callback that wants every `RenderProgress` (frames too, so it can tell speed
    and time left)."""

    def render_progress(self, event: RenderProgress) -> None: ...


# A plain callable hears (chunks done, chunks total) after each chunk, as it always has (the
# Prefect flow's progress artifact); a RenderObserver hears every RenderProgress instead.
ProgressFn = Callable[[int, int], None] | RenderObserver
GuideFn = Callable[[int, np.ndarray], CompositeGuide]  # (first source frame, source frames) → guide


def render_shot(
    *,
    shot: str,
    info: MediaInfo,
    first_frame: int,
    last_frame: int,
    chunks: Sequence[tuple[int, int]],
    keyframes: Mapping[int, EditedKeyframe],
    propagator: Propagator,
    work_dir: Path,
    master_path: Path,
    proxy_path: Path,
    ledger: ChunkLedger,
    encode: EncodeSettings = EncodeSettings(),
    progress: ProgressFn | None = None,
    instruction: str = "",
    guide: GuideFn | None = None,
    identity: str | None = None,
    stop: StopFlag | None = None,
) -> RenderResult:
    """Render source frames `first_frame..last_frame` of `info` with the edits of `keyframes`.

    With `guide` (a background replacement), each chunk also carries its composite guide and the
    QC gains the background figures (`studio_nova.render.background.background_qc`).
    `identity` (the render's, see `studio_nova.workflow.render_plan`) is written into the master's
    and the proxy's metadata; a file already at either path is reused only when it carries the
    same identity (this render, stopped after writing it), and is never replaced.

    With `stop` set, the render raises `RenderStopped` before the next chunk it would render (and
    before assembling the master); a chunk that fails while `stop` is set (e.g. its ffmpeg got the
    terminal's Ctrl-C too) is abandoned, not recorded as failed: nothing of it has a real name.
    """
    if not chunks or chunks[0][0] != first_frame or chunks[-1][1] != last_frame:
        raise ValueError(f"chunks {list(chunks)[:3]}… do not cover frames {first_frame}..{last_frame}")
    name = getattr(propagator, "name", type(propagator).__name__)
    if guide is not None and not getattr(propagator, "supports_guide", False):
        raise PluginError(
            f"propagator {name!r} cannot render a background replacement (it does not read "
            "ChunkInput.guide); use flow or nova", shot=shot,
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    segments: list[Path] = []
    frames = last_frame - first_frame + 1
    rendered_frames = 0  # by this call: a resumed render's speed counts only its own work
    done = RenderProgress(shot, 0, len(chunks), 0, frames)  # resumed chunks included
    reusable = _reusable_chunks(work_dir, len(chunks), ledger)
    for index, (start, end) in enumerate(chunks):
        segment = _segment_path(work_dir, index)
        stats_path = _stats_path(work_dir, index)
        next_start = chunks[index + 1][0] if index + 1 < len(chunks) else None
        tail_path = _tail_path(work_dir, index)
        committed = (next_start if next_start is not None else end + 1) - start
        if reusable[index]:
            segments.append(segment)
            done = _advance(done, committed)
            _drop_tail(work_dir, index - 1)  # chunk index is complete: its predecessor's tail is spent
            continue
        if stop_requested(stop):
            raise RenderStopped(shot, done.chunk_index, len(chunks))
        if rendered_frames == 0:  # the first chunk this call renders: say where it starts
            _report(progress, done, plain=False)
        ledger.start(index)
        try:
            _render_chunk(
                shot=shot,
                info=info,
                index=index,
                start=start,
                end=end,
                next_start=next_start,
                previous_tail=_tail_path(work_dir, index - 1) if index else None,
                keyframes=keyframes,
                propagator=propagator,
                segment=segment,
                tail_path=tail_path,
                stats_path=stats_path,
                encode=encode,
                instruction=instruction,
                guide=guide,
            )
        except Exception as exc:
            if stop_requested(stop):  # abandoned, not failed: the rerun renders it again
                raise RenderStopped(shot, done.chunk_index, len(chunks)) from exc
            ledger.fail(index, str(exc))
            raise
        ledger.complete(index, segment)
        _drop_tail(work_dir, index - 1)  # only once the ledger holds this chunk (see `_reusable_chunks`)
        segments.append(segment)
        rendered_frames += committed
        done = _advance(done, committed)
        _report(progress, done, plain=True)

    if stop_requested(stop):  # every chunk is recorded: a rerun only assembles the master
        raise RenderStopped(shot, done.chunk_index, len(chunks))
    timecode = frames_to_timecode(info.start_frame + first_frame, info.rate)
    tag = render_tag(identity)
    try:
        if not _ours(master_path, tag, frames, shot):
            master_path.parent.mkdir(parents=True, exist_ok=True)
            concat(segments, master_path, timecode=timecode, comment=tag)
        if not _ours(proxy_path, tag, frames, shot):
            make_proxy(master_path, proxy_path, crf=encode.proxy_crf, comment=tag)
    except Exception as exc:
        if stop_requested(stop):  # the encoder got the stop too: its temp file is gone, rerun
            raise RenderStopped(shot, done.chunk_index, len(chunks)) from exc
        raise
    elapsed = time.perf_counter() - started
    report = _shot_qc(work_dir, len(chunks), frames, rendered_frames, elapsed)
    return RenderResult(master=master_path, proxy=proxy_path, frames=frames, qc=report)


def _segment_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"chunk_{index:04d}.mov"


def _stats_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"chunk_{index:04d}.json"


def _tail_path(work_dir: Path, index: int) -> Path:
    """Chunk `index`'s last frames, the next chunk's anchors (kept losslessly until it is done)."""
    return work_dir / f"chunk_{index:04d}_tail.npy"


def _reusable_chunks(work_dir: Path, n_chunks: int, ledger: ChunkLedger) -> list[bool]:
    """Which chunks a (resumed) render keeps as they are, decided from the last chunk back.

    A chunk is kept when the ledger has it done, its segment and stats exist, and nothing will
    need its tail again: it is the last chunk, or the next chunk is kept too, or its tail is
    still there for the next chunk to blend with. A tail is deleted only after the next chunk is
    recorded done (`render_shot`), so after a kill at any point either the tail is there or the
    next chunk is done; a next chunk recorded done whose files are gone is rendered again, and so
    is this one when its tail is gone too (and so on back: each re-rendered chunk needs the tail
    of the one before it).
    """
    reusable = [False] * n_chunks
    for index in reversed(range(n_chunks)):
        complete = (
            ledger.is_done(index) and _segment_path(work_dir, index).exists() and _stats_path(work_dir, index).exists()
        )
        last = index == n_chunks - 1
        reusable[index] = complete and (last or reusable[index + 1] or _tail_path(work_dir, index).exists())
    return reusable


def _drop_tail(work_dir: Path, index: int) -> None:
    """Delete chunk `index`'s tail: call only once chunk `index + 1` is recorded done."""
    if index >= 0:
        _tail_path(work_dir, index).unlink(missing_ok=True)


def _advance(done: RenderProgress, frames: int) -> RenderProgress:
    return replace(done, chunk_index=done.chunk_index + 1, frames_done=done.frames_done + frames)


def _report(progress: ProgressFn | None, event: RenderProgress, *, plain: bool) -> None:
    """Tell `progress` where the render stands: an observer every event, a plain callable only
    the finished chunks (`plain`), as (chunks done, chunks total)."""
    if isinstance(progress, RenderObserver):
        progress.render_progress(event)
    elif progress is not None and plain:
        progress(event.chunk_index, event.chunks)


def _render_chunk(
    *,
    shot: str,
    info: MediaInfo,
    index: int,
    start: int,
    end: int,
    next_start: int | None,
    previous_tail: Path | None,
    keyframes: Mapping[int, EditedKeyframe],
    propagator: Propagator,
    segment: Path,
    tail_path: Path,
    stats_path: Path,
    encode: EncodeSettings,
    instruction: str,
    guide: GuideFn | None = None,
) -> None:
    source = _read_chunk(info, start, end)
    anchors: dict[int, np.ndarray] = {}
    if previous_tail is not None:
        tail = np.load(previous_tail)
        anchors = {j: tail[j] for j in range(min(len(tail), len(source)))}
    # Select by source frame first (keys are cheap), then load only this chunk's keyframes: the
    # mapping may read each one from its files on access (`workflow.approved_keyframes`).
    selected = [f for f in keyframes if start <= f <= end]
    chunk_keyframes = {f - start: keyframes[f] for f in selected}
    chunk_guide = guide(start, source) if guide is not None else None
    output = propagator.propagate(
        ChunkInput(
            shot=shot,
            first_frame=start,
            frames=source,
            keyframes=chunk_keyframes,
            anchors=anchors,
            instruction=instruction,
            guide=chunk_guide,
        )
    )
    _check_output(output, source, shot, start, getattr(propagator, "name", type(propagator).__name__))

    # The blend and the figures go frame by frame: whole-chunk float temporaries would take
    # gigabytes at 1080p, and more the longer the overlap (the last chunk's may be most of it).
    final = output.frames
    shared = np.may_share_memory(final, source) or any(np.may_share_memory(final, a) for a in anchors.values())
    if shared or not final.flags.writeable:
        final = final.copy()  # a propagator may hand back its input: the source stays as read
    seam = None
    if anchors:
        # Cross-fade from the previous chunk's result into this one over the shared frames.
        n = len(anchors)
        weights = np.arange(1, n + 1, dtype=np.float32) / (n + 1)
        squared = 0.0
        for j in range(n):
            prev, ours = anchors[j], output.frames[j]
            squared += _squared_error(prev, ours)
            mixed = (1.0 - weights[j]) * prev.astype(np.float32) + weights[j] * ours.astype(np.float32)
            final[j] = np.rint(mixed).astype(source.dtype)
        mse = squared / (n * source[0].size)
        seam = math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)

    commit_end = (next_start - start) if next_start is not None else len(source)
    untouched_pixels = exact_pixels = mask_total = 0
    for j in range(commit_end):
        untouched = output.masks[j] == 0
        untouched_pixels += int(untouched.sum())
        exact_pixels += int((untouched & (final[j] == source[j]).all(axis=-1)).sum())
        mask_total += int(output.masks[j].sum(dtype=np.int64))
    stats = {
        "frames": int(commit_end),
        "untouched_pixels": untouched_pixels,
        "untouched_exact_pixels": exact_pixels,
        "edited_coverage": float(mask_total / (commit_end * output.masks[0].size) / 255.0),
        "seam_psnr_db": None if seam is None else float(min(seam, SEAM_PSNR_CAP)),
    }
    if chunk_guide is not None:
        from studio_nova.render.background import background_qc

        stats["background"] = background_qc(
            to_float(source[:commit_end]), to_float(final[:commit_end]),
            chunk_guide.alpha[:commit_end], chunk_guide.background[:commit_end],
            core=chunk_guide.changed[:commit_end] <= 0,
        )

    for stale in (segment, tail_path):  # our own leftovers from an interrupted attempt
        if stale.exists():
            stale.unlink()
    with VideoWriter(
        segment,
        width=info.width,
        height=info.height,
        rate=info.rate,
        codec="prores_hq",
        input_dtype=source.dtype,
        color_matrix=info.color_matrix,
        prores_qscale=encode.prores_qscale,
    ) as writer:
        for frame in final[:commit_end]:
            writer.write(frame)
    if next_start is not None:
        _save_atomic_npy(tail_path, final[next_start - start :])
    write_text(stats_path, json.dumps(stats))


def _read_chunk(info: MediaInfo, start: int, end: int) -> np.ndarray:
    """Source frames `start..end` in one array, filled as they are decoded (no list, no second copy)."""
    frames: np.ndarray | None = None
    count = 0
    for count, frame in enumerate(read_frames(info, start, end), start=1):
        if frames is None:
            frames = np.empty((end - start + 1, *frame.shape), frame.dtype)
        frames[count - 1] = frame
    if frames is None:
        raise PropagationError(f"no source frames decoded for {start}..{end}", frame=start)
    return frames[:count]


def _squared_error(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of squared differences of two frames of integer codes, on the [0, 1] scale (as `qc.psnr`)."""
    scale = float(np.iinfo(a.dtype).max)
    difference = a.astype(np.float64) / scale - b.astype(np.float64) / scale
    return float(np.square(difference, out=difference).sum())


def _check_output(output: ChunkOutput, source: np.ndarray, shot: str, start: int, name: str) -> None:
    if not isinstance(output, ChunkOutput):
        raise PluginError(f"propagator {name!r} returned {type(output).__name__}, not ChunkOutput", shot=shot)
    if output.frames.shape != source.shape or output.frames.dtype != source.dtype:
        raise PropagationError(
            f"propagator {name!r} returned frames {output.frames.shape} {output.frames.dtype} "
            f"for a chunk of {source.shape} {source.dtype}",
            shot=shot,
            frame=start,
        )
    if output.masks.shape != source.shape[:3] or output.masks.dtype != np.uint8:
        raise PropagationError(
            f"propagator {name!r} returned masks {output.masks.shape} {output.masks.dtype}, "
            f"expected {source.shape[:3]} uint8",
            shot=shot,
            frame=start,
        )


def render_tag(identity: str | None) -> str | None:
    """What a render writes into its files' `comment` metadata."""
    return f"studio-nova render {identity}" if identity else None


def _ours(path: Path, tag: str | None, expected: int, shot: str) -> bool:
    """Whether a finished file of this very render is already at `path` (a previous attempt was
    stopped after writing it, before the store recorded it). A file that does not carry this
    render's identity is in the way: it is reported, never adopted and never replaced."""
    if not path.exists():
        return False
    try:
        found = probe(path)
    except StudioNovaError:
        found = None
    if found is not None and tag is not None and found.comment == tag and found.frame_count == expected:
        return True
    what = "another render's" if found is not None and (found.comment or "").startswith("studio-nova render") else "a"
    raise PropagationError(
        f"{what} file that this render did not make is in the way; move it aside (or use another "
        "--out) and run again: nothing was overwritten",
        shot=shot,
        path=path,
    )


def _shot_qc(work_dir: Path, n_chunks: int, frames: int, rendered: int, elapsed: float) -> dict:
    stats = [json.loads(_stats_path(work_dir, i).read_text()) for i in range(n_chunks)]
    untouched = sum(s["untouched_pixels"] for s in stats)
    exact = sum(s["untouched_exact_pixels"] for s in stats)
    seams = [s["seam_psnr_db"] for s in stats if s["seam_psnr_db"] is not None]
    coverage = sum(s["edited_coverage"] * s["frames"] for s in stats) / max(frames, 1)
    report = {
        "frames": frames,
        "chunks": n_chunks,
        "edited_coverage": round(coverage, 6),
        "untouched_exact": 1.0 if untouched == 0 else exact / untouched,
        "seam_psnr_db": round(min(seams), 3) if seams else None,
        "render_fps": round(rendered / elapsed, 3) if rendered and elapsed > 0 else None,
    }
    background = [(s["frames"], s["background"]) for s in stats if s.get("background")]
    if background:
        report["background"] = _background_summary(background)
    return report


def _background_summary(chunks: list[tuple[int, dict]]) -> dict:
    """A shot's background figures from its chunks': the worst fidelity, frame-weighted means of
    the motions, pixel-weighted means of the edge figures."""

    def weighted(key: str, weight: Callable[[int, dict], float]) -> float | None:
        pairs = [(weight(n, s), s[key]) for n, s in chunks if s.get(key) is not None]
        total = sum(w for w, _ in pairs)
        return round(sum(w * v for w, v in pairs) / total, 4) if total else None

    fidelity = [s["fg_fidelity_db"] for _, s in chunks if s.get("fg_fidelity_db") is not None]
    bg, plate = weighted("bg_motion", lambda n, s: n), weighted("plate_motion", lambda n, s: n)
    return {
        "fg_fidelity_db": min(fidelity) if fidelity else None,
        "bg_motion": bg,
        "plate_motion": plate,
        "bg_motion_ratio": round(bg / plate, 4) if bg is not None and plate else None,
        "edge_bleed": weighted("edge_bleed", lambda n, s: s.get("edge_pixels") or 0),
        "edge_halo": weighted("edge_halo", lambda n, s: s.get("edge_pixels") or 0),
    }


def _save_atomic_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.save(handle, array)
