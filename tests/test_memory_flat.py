"""Memory does not grow with a shot's length (DESIGN section 5): keyframes are read per chunk at
render time and edited in batches at edit time, and a chunk's tail is deleted once the next
chunk is done, without breaking resume."""

from __future__ import annotations

import json
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self

import numpy as np
import opentimelineio as otio
import pytest

from studio_nova import workflow
from studio_nova.config import Settings
from studio_nova.cut.plan import plan_chunks, plan_keyframes
from studio_nova.media.decode import read_frames
from studio_nova.media.encode import VideoWriter
from studio_nova.media.keyframe_files import keyframe_filename, write_mask_png, write_png
from studio_nova.media.probe import probe
from studio_nova.plugin_api.propagation import ChunkInput, ChunkOutput
from studio_nova.render.shot import MemoryLedger, render_shot
from studio_nova.workflow.keyframes import ApprovedKeyframes, keyframe_batches

W, H = 48, 32
RATE = 25

# --- files opened, as the interpreter sees them (a real file system, no mock of the loader) ---

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


class _Opens:
    """Which files under `folder` are opened inside the `with` block."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.paths = str(folder), []

    def __enter__(self) -> Self:
        global _OPENED
        _OPENED = []
        return self

    def __exit__(self, *exc: object) -> None:
        global _OPENED
        self.paths = [p for p in _OPENED or [] if p.startswith(self.folder)]
        _OPENED = None


# --- footage ---------------------------------------------------------------------------------


def _media(path: Path, frames: int, width: int = W, height: int = H, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    with VideoWriter(path, width=width, height=height, rate=Fraction(RATE), codec="prores_hq",
                     input_dtype=np.uint8) as writer:
        for t in range(frames):
            writer.write(np.roll(base, t, axis=1))
    return path


def _keyframe_files(folder: Path, frames: list[int], width: int = W, height: int = H) -> list[SimpleNamespace]:
    """Edited keyframe and mask PNGs, as the store's records name them."""
    rng = np.random.default_rng(2)
    records = []
    for frame in frames:
        edited, mask = folder / "edited" / keyframe_filename(frame), folder / "mask" / keyframe_filename(frame)
        write_png(edited, rng.random((height, width, 3), dtype=np.float32), 8, overwrite=True)
        write_mask_png(mask, np.ones((height, width), np.float32), overwrite=True)
        records.append(SimpleNamespace(source_frame=frame, edited_path=str(edited), mask_path=str(mask)))
    return records


class _Recording:
    """A propagator that records the keyframes (source frames) of every chunk it renders and
    brightens each keyframe's frame, so that the result depends on the blend of the tails."""

    name = "recording"

    def __init__(self) -> None:
        self.chunks: list[tuple[int, list[int]]] = []

    def propagate(self, chunk: ChunkInput) -> ChunkOutput:
        self.chunks.append((chunk.first_frame, sorted(chunk.first_frame + i for i in chunk.keyframes)))
        frames = chunk.frames.copy()
        masks = np.zeros(frames.shape[:3], np.uint8)
        for index, keyframe in chunk.keyframes.items():
            frames[index] = np.clip(frames[index].astype(np.int32) + 40 + int(keyframe.image[0, 0, 0] * 10), 0, 255)
            masks[index] = 255
        return ChunkOutput(frames=frames, masks=masks)


class _CountingKeyframes(ApprovedKeyframes):
    """The real lazy mapping, counting the keyframes it hands out."""

    def __init__(self, records: list[SimpleNamespace]) -> None:
        super().__init__(records)
        self.loads: list[int] = []

    def __getitem__(self, frame: int):
        self.loads.append(frame)
        return super().__getitem__(frame)


def _render(tmp: Path, media: Path, keyframes: Any, ledger: Any, *, propagator: Any = None, tag: str = "a",
            length: int = 9, overlap: int = 4, identity: str | None = None):
    info = probe(media)
    chunks = plan_chunks(0, info.frame_count - 1, length=length, overlap=overlap)
    return render_shot(
        shot="sh010", info=info, first_frame=0, last_frame=info.frame_count - 1, chunks=chunks,
        keyframes=keyframes, propagator=propagator or _Recording(), work_dir=tmp / "work",
        master_path=tmp / f"master_{tag}.mov", proxy_path=tmp / f"proxy_{tag}.mp4", ledger=ledger,
        identity=identity,
    )


def _decoded(path: Path) -> np.ndarray:
    info = probe(path)
    return np.stack(list(read_frames(info, 0, info.frame_count - 1)))


def _tails(tmp: Path) -> list[str]:
    return sorted(p.name for p in (tmp / "work").glob("chunk_*_tail.npy"))


# --- render time: keyframes ------------------------------------------------------------------


def test_approved_keyframes_hold_only_the_frames_and_read_a_keyframe_each_time_it_is_looked_up(tmp_path):
    frames = [0, 10, 20, 29]
    records = _keyframe_files(tmp_path / "kf", frames)
    with _Opens(tmp_path / "kf") as opened:
        keyframes = ApprovedKeyframes(records)
        assert list(keyframes) == frames and len(keyframes) == 4 and 20 in keyframes and 5 not in keyframes
    assert opened.paths == []  # made, iterated and asked for membership without a read
    with _Opens(tmp_path / "kf") as opened:
        first = keyframes[20]
        again = keyframes[20]
    assert sorted(Path(p).parent.name for p in opened.paths) == ["edited", "edited", "mask", "mask"]  # no cache
    assert first.source_frame == 20 and first.image.shape == (H, W, 3) and np.array_equal(first.image, again.image)
    write_png(Path(records[2].edited_path), np.zeros((H, W, 3), np.float32), 8, overwrite=True)
    assert keyframes[20].image.max() == 0.0  # read from the file as it is now
    with pytest.raises(KeyError):
        keyframes[5]


def test_a_render_loads_each_chunks_keyframes_only_for_that_chunk(tmp_path):
    media = _media(tmp_path / "A.mov", 40)
    frames = plan_keyframes(0, 39, interval=3)
    keyframes = _CountingKeyframes(_keyframe_files(tmp_path / "kf", frames))
    propagator = _Recording()
    _render(tmp_path, media, keyframes, MemoryLedger(), propagator=propagator)
    chunks = plan_chunks(0, 39, length=9, overlap=4)
    assert len(chunks) >= 7
    expected = [[f for f in frames if start <= f <= end] for start, end in chunks]
    assert [kfs for _, kfs in propagator.chunks] == expected
    # Each chunk loaded exactly its own keyframes (those in an overlap twice), never the shot's.
    assert sorted(keyframes.loads) == sorted(f for kfs in expected for f in kfs)


def _render_peak(tmp: Path, frames: int, width: int = 160, height: int = 96) -> int:
    # Frames big enough that a chunk's working set (≈ 2 MB here) outweighs what a render keeps
    # per chunk on purpose (its segment's name, its QC figures: a few hundred bytes).
    media = _media(tmp / "A.mov", frames, width, height)
    records = _keyframe_files(tmp / "kf", plan_keyframes(0, frames - 1, interval=1), width, height)
    tracemalloc.start()
    try:
        _render(tmp, media, ApprovedKeyframes(records), MemoryLedger())  # the mapping is measured too
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_a_renders_peak_memory_does_not_grow_with_the_shot(tmp_path):
    # A keyframe on every frame: a render that held the shot's keyframes (240 KB each as float32
    # image and mask) would peak ≈ 40 MB higher for the long shot than for the short one.
    short = _render_peak(tmp_path / "short", 30)
    long = _render_peak(tmp_path / "long", 200)
    assert long <= 1.25 * short, (short, long)


# --- render time: tails ----------------------------------------------------------------------


class _WatchingLedger(MemoryLedger):
    """A ledger that notes which tails exist whenever a chunk starts or is recorded done."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.tmp, self.seen = tmp, []

    def start(self, index: int) -> None:
        self.seen.append(("start", index, _tails(self.tmp)))

    def complete(self, index: int, output: Path) -> None:
        self.seen.append(("complete", index, _tails(self.tmp)))
        super().complete(index, output)


def test_a_tail_lives_until_the_next_chunk_is_done_and_none_is_left_after_the_render(tmp_path):
    media = _media(tmp_path / "A.mov", 30)
    ledger = _WatchingLedger(tmp_path)
    _render(tmp_path, media, ApprovedKeyframes(_keyframe_files(tmp_path / "kf", [0, 10, 20, 29])), ledger)
    n = len(plan_chunks(0, 29, length=9, overlap=4))
    tail = "chunk_{:04d}_tail.npy".format
    for event, index, tails in ledger.seen:
        if event == "start":  # the previous chunk's tail is what this one blends with: the only one
            assert tails == ([tail(index - 1)] if index else []), (event, index, tails)
        else:  # written, and the previous one still there until this chunk is recorded
            assert tails == ([tail(index - 1)] if index else []) + ([tail(index)] if index < n - 1 else [])
    assert _tails(tmp_path) == []
    assert sorted(p.name for p in (tmp_path / "work").glob("chunk_*.mov")) == [f"chunk_{i:04d}.mov" for i in range(n)]


class _Killed(BaseException):
    """The process dies here (not an Exception: nothing is recorded as failed)."""


class _KillingLedger(MemoryLedger):
    """Dies once, at `when` ('start', 'before-record' or 'after-record') of chunk `at`."""

    def __init__(self, when: str, at: int) -> None:
        super().__init__()
        self.when, self.at, self.armed = when, at, True

    def _maybe(self, when: str, index: int) -> None:
        if self.armed and (when, index) == (self.when, self.at):
            self.armed = False
            raise _Killed

    def start(self, index: int) -> None:
        self._maybe("start", index)

    def complete(self, index: int, output: Path) -> None:
        self._maybe("before-record", index)  # segment, tail and stats written, the ledger not told
        super().complete(index, output)
        self._maybe("after-record", index)  # recorded, the previous tail not yet deleted


@pytest.mark.parametrize("when", ["start", "before-record", "after-record"])
@pytest.mark.parametrize("at", [1, 2, 5])
def test_a_render_killed_anywhere_resumes_with_the_same_master_rendering_only_what_was_not_done(tmp_path, when, at):
    media = _media(tmp_path / "A.mov", 30)
    keyframes = ApprovedKeyframes(_keyframe_files(tmp_path / "kf", [0, 10, 20, 29]))
    whole = tmp_path / "whole"
    _render(whole, media, keyframes, MemoryLedger())
    ledger = _KillingLedger(when, at)
    with pytest.raises(_Killed):
        _render(tmp_path, media, keyframes, ledger)
    done_before = set(ledger.done)
    again = _Recording()
    result = _render(tmp_path, media, keyframes, ledger, propagator=again)
    assert [first for first, _ in again.chunks] == [
        start for i, (start, _) in enumerate(plan_chunks(0, 29, length=9, overlap=4)) if i not in done_before
    ]
    assert np.array_equal(_decoded(result.master), _decoded(whole / "master_a.mov"))
    assert _tails(tmp_path) == []


def test_a_done_chunk_whose_segment_is_gone_is_rendered_again_with_the_chunks_before_it_whose_tails_are_gone(
    tmp_path,
):
    media = _media(tmp_path / "A.mov", 30)
    keyframes = ApprovedKeyframes(_keyframe_files(tmp_path / "kf", [0, 10, 20, 29]))
    ledger = MemoryLedger()
    first = _render(tmp_path, media, keyframes, ledger, tag="a")
    chunks = plan_chunks(0, 29, length=9, overlap=4)
    (tmp_path / "work" / "chunk_0002.mov").unlink()  # recorded done, but its file is lost
    again = _Recording()
    second = _render(tmp_path, media, keyframes, ledger, propagator=again, tag="b")
    # Chunk 2 needs chunk 1's tail, which went when chunk 2 was done: 1 again, and so 0 too.
    assert [start for start, _ in again.chunks] == [start for start, _ in chunks[:3]]
    assert np.array_equal(_decoded(second.master), _decoded(first.master))
    assert _tails(tmp_path) == []


# --- edit time: batches ----------------------------------------------------------------------


def test_keyframe_batches_span_at_most_one_chunk():
    frames = plan_keyframes(0, 29, interval=4)
    assert keyframe_batches(frames, 9) == [[0, 4, 8], [12, 16, 20], [24, 28, 29]]
    assert keyframe_batches(frames, 33) == [frames]
    assert keyframe_batches([5], 1) == [[5]]


FRAMES = 30
BATCHED = {"chunk_length": 9, "chunk_overlap": 4, "keyframe_interval": 4}  # 3 batches of 3 keyframes
WHOLE = {"chunk_length": 33, "chunk_overlap": 4, "keyframe_interval": 4}  # one batch


def _cut(folder: Path, media: Path, edit: dict, frames: int = FRAMES) -> Path:
    span = otio.opentime.TimeRange(otio.opentime.RationalTime(0, RATE), otio.opentime.RationalTime(frames, RATE))
    clip = otio.schema.Clip(
        name="sh010", media_reference=otio.schema.ExternalReference(target_url=str(media), available_range=span),
        source_range=span,
    )
    clip.metadata["studio_nova"] = {"edit": edit}
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.append(clip)
    timeline = otio.schema.Timeline(name="cut")
    timeline.tracks.append(track)
    path = folder / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


def _edited(folder: Path, cut: Path, settings: dict) -> tuple[dict[int, tuple[bytes, bytes, bytes]], dict]:
    """The keyframe files (original, edited, mask bytes) and info of one edit of the cut's shot."""
    ws = workflow.Workspace.open(folder, Settings(**settings))
    try:
        [shot_id] = workflow.ingest_cut(ws, cut).shot_ids
        workflow.edit_keyframes(ws, shot_id)
        records = ws.store.keyframes(shot_id)
    finally:
        ws.close()
    files = {
        r.source_frame: tuple(Path(p).read_bytes() for p in (r.original_path, r.edited_path, r.mask_path))
        for r in records
    }
    return files, records[0].info


def _same_batched_and_whole(tmp_path: Path, media: Path, edit: dict, frames: int = FRAMES) -> dict:
    cut = _cut(tmp_path, media, edit, frames)
    batched, batched_info = _edited(tmp_path / "batched", cut, BATCHED)
    whole, whole_info = _edited(tmp_path / "whole", cut, WHOLE)
    wanted = plan_keyframes(0, frames - 1, interval=4)
    assert len(keyframe_batches(wanted, BATCHED["chunk_length"])) >= 2
    assert list(batched) == wanted and list(whole) == wanted
    for frame in wanted:
        assert batched[frame] == whole[frame], f"keyframe {frame} differs batched and whole"
    assert json.dumps(batched_info, sort_keys=True) == json.dumps(whole_info, sort_keys=True)
    return batched


def _scene_media(tmp_path: Path, width: int = 56, height: int = 40, frames: int = FRAMES) -> Path:
    from studio_nova.footage.synthetic import make_scene

    scene = make_scene(frames, width, height, seed=5, noise=0.01)
    path = tmp_path / "A001.mov"
    with VideoWriter(path, width=width, height=height, rate=Fraction(RATE), codec="prores_hq",
                     input_dtype=np.uint8) as writer:
        for frame in scene.frames:
            writer.write(frame)
    return path


def test_recolor_writes_the_same_keyframes_batched_as_in_one_call(tmp_path):
    files = _same_batched_and_whole(tmp_path, _scene_media(tmp_path), {"instruction": "red to teal", "editor": "recolor"})
    assert any(original != edited for original, edited, _ in files.values())  # it did edit


def test_artist_writes_the_same_keyframes_and_info_batched_as_in_one_call(tmp_path):
    media = _scene_media(tmp_path)
    paintings = tmp_path / "painted"
    for keyframe in workflow.original_keyframes(media, 0, FRAMES - 1, 4):
        image = keyframe.image.copy()
        image[5:15, 10:20] = 1.0
        write_png(paintings / keyframe_filename(keyframe.source_frame), image, 8, overwrite=True)
    _same_batched_and_whole(tmp_path, media, {"instruction": "paint", "editor": "artist",
                                              "params": {"dir": str(paintings)}})


@pytest.mark.parametrize("editor", ["flux-kontext", "qwen-image-edit"])
def test_a_model_editor_writes_the_same_keyframes_batched_as_in_one_call(tmp_path, editor):
    pytest.importorskip("diffusers")
    from studio_nova.testing.tiny_models import ensure_tiny_model

    folder = ensure_tiny_model(editor, tmp_path.parent / "tiny-models")
    area = 24 * 32 if editor == "flux-kontext" else 32 * 32
    edit = {"instruction": "make the car blue", "editor": editor, "seed": 3,
            "params": {"model_dir": str(folder), "steps": 1, "max_area": area}}
    # 13 frames: keyframes 0, 4, 8 | 12, two batches (the tiny models still take seconds a keyframe).
    _same_batched_and_whole(tmp_path, _scene_media(tmp_path, frames=13), edit, frames=13)


def _greenscreen(tmp_path: Path, frames: int, width: int, height: int) -> Path:
    from studio_nova.footage.greenscreen import make_greenscreen

    gs = make_greenscreen(frames, width, height, seed=3)
    (tmp_path / "plates").mkdir()
    gs.write_plate(tmp_path / "plates" / "harbour.mov")
    return gs.write_source(tmp_path / "GS001.mov")


def _background_edit(tmp_path: Path, matte: dict) -> dict:
    return {"kind": "background", "instruction": "harbour behind the dancer", "matte": matte,
            "background": {"source": "plate", "params": {"video": str(tmp_path / "plates" / "harbour.mov")}}}


def test_background_writes_the_same_keyframes_batched_as_in_one_call(tmp_path):
    media = _greenscreen(tmp_path, FRAMES, 64, 48)
    _same_batched_and_whole(tmp_path, media, _background_edit(tmp_path, {"source": "chroma", "params": {}}))


def test_background_with_a_tracking_matte_tracks_once_and_writes_the_same_keyframes_batched(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from studio_nova.testing.tiny_sam2 import build_tiny_sam2
    from studio_nova_plugins.mattes.segmentation import SegmentationMatte

    model = build_tiny_sam2(tmp_path / "sam2")
    media = _greenscreen(tmp_path, 40, 64, 48)  # 40 frames: two runs of the tracker's grid
    tracked: list[int] = []
    original = SegmentationMatte.mattes

    def counting(self, context):
        tracked.extend(range(context.first_frame, context.first_frame + len(context.frames)))
        return original(self, context)

    monkeypatch.setattr(SegmentationMatte, "mattes", counting)
    matte = {"source": "segmentation", "params": {"model_dir": str(model), "points": [[32, 20]]}}
    _same_batched_and_whole(tmp_path, media, _background_edit(tmp_path, matte), frames=40)
    # Both edits (batched, then whole) tracked the shot once each from its start, not per batch.
    assert tracked.count(0) == 2 and len(tracked) < 2 * 2 * 40, len(tracked)


# --- the benchmark ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_memory_benchmark_stays_flat_at_320x180(tmp_path):
    from studio_nova_benchmarks import memory

    report = memory.run({"320x180": (300, 1500)}, tmp_path)
    pair = report["sizes"]["320x180"]
    assert [c["status"] for c in pair["cases"]] == ["conformed", "conformed"], pair
    assert pair["ratio_peak_rss"] <= memory.TARGET_RATIO, pair
