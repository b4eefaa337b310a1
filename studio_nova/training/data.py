"""Training data: a studio's own clips (a folder or a cut), as random windows at the model's size.

`find_clips` lists what can be trained on: every video file under a folder (or one file), or the
used range of every video clip of a cut (OTIO, or an EDL / FCP XML / AAF that OTIO reads). A clip
that cannot be read, or is shorter than a window, is skipped with a warning that names it; no
usable clip at all is a `TrainingDataError`. Source media is only ever read.

`WindowDataset[i]` is training sample `i`: a random window of a random clip (longer clips are
drawn more often, in proportion to their number of windows), resized to cover the model's
resolution and randomly cropped, streamed through the media layer (`read_frames`: one window is
decoded, never a whole clip), plus a window of *another* clip for the pasted content, and the
two simulated conditions (`degrade.py`). A sample is a pure function of (seed, i), so the data
order is restored on resume by restoring one number (`WindowSampler.position`), and samples can
be prepared ahead of time in another thread without changing what the model sees.

A clip's caption (the text condition) comes from a sidecar `NAME.txt` next to the file, or from
`metadata["studio_nova"]["caption"]` of the clip in a cut; otherwise the run's default prompt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from studio_nova.errors import MediaError, StudioNovaError, TrainingDataError
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import probe
from studio_nova.training.degrade import (
    INTERVAL_RANGE,
    anchored_control,
    source_fidelity,
)

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mov", ".mp4", ".m4v", ".mkv", ".mxf", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".y4m"}
)


@dataclass(frozen=True)
class TrainingClip:
    """A stretch of one media file to train on, in source frames (inclusive)."""

    path: Path
    info: MediaInfo
    first_frame: int
    last_frame: int
    name: str
    caption: str | None = None

    @property
    def frame_count(self) -> int:
        return self.last_frame - self.first_frame + 1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "first_frame": self.first_frame,
                "last_frame": self.last_frame, "width": self.info.width, "height": self.info.height}


@dataclass(frozen=True)
class SkippedClip:
    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


@dataclass(frozen=True)
class TrainingData:
    """The usable clips of a data path, and what was skipped and why."""

    root: Path
    clips: tuple[TrainingClip, ...]
    skipped: tuple[SkippedClip, ...] = ()

    def fingerprint(self) -> str:
        """Identifies the clip list (files, ranges, sizes): a resumed run must see the same data."""
        items = [
            [str(c.path), c.first_frame, c.last_frame, c.info.width, c.info.height, c.info.frame_count, c.caption]
            for c in self.clips
        ]
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "clips": len(self.clips),
            "frames": sum(c.frame_count for c in self.clips),
            "skipped": [s.to_dict() for s in self.skipped],
        }


def find_clips(path: str | os.PathLike[str], window: int, *, exclude: Path | None = None) -> TrainingData:
    """The clips under `path` (a folder, searched recursively; a video file; or a cut) that hold
    at least `window` frames. Files under `exclude` (the run's output folder) are ignored."""
    from studio_nova.cut.ingest import ADAPTERS

    root = Path(os.path.abspath(path))
    if window < 1:
        raise ValueError(f"window must be at least 1 frame, got {window}")
    if not root.exists():
        raise TrainingDataError("training data not found: give a folder of clips, a clip, or a cut", path=root)
    if root.is_dir():
        candidates, skipped = _folder_clips(root, exclude)
        if not candidates and not skipped:
            raise TrainingDataError(
                f"no video clips in the folder (looked for {', '.join(sorted(VIDEO_SUFFIXES))})", path=root
            )
    elif root.suffix.lower() in ADAPTERS:
        candidates, skipped = _cut_clips(root)
    else:
        candidates, skipped = _folder_clips(root, None) if root.suffix.lower() in VIDEO_SUFFIXES else ([], [])
        if not candidates and not skipped:
            raise TrainingDataError(
                f"{root.suffix!r} is neither a video file nor a cut ({', '.join(sorted(ADAPTERS))})", path=root
            )
    clips: list[TrainingClip] = []
    seen: set[tuple[Path, int, int]] = set()
    for clip in candidates:
        if clip.frame_count < window:
            skipped.append(SkippedClip(clip.path, f"{clip.frame_count} frames, shorter than a window of {window}"))
            continue
        if (clip.path, clip.first_frame, clip.last_frame) not in seen:
            seen.add((clip.path, clip.first_frame, clip.last_frame))
            clips.append(clip)
    for s in skipped:
        log.warning("training data: skipping %s: %s", s.path, s.reason)
    if not clips:
        reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        raise TrainingDataError(
            f"no usable clip ({len(skipped)} skipped: {reasons}{more})", path=root, skipped=len(skipped)
        )
    return TrainingData(root, tuple(clips), tuple(skipped))


def _folder_clips(root: Path, exclude: Path | None) -> tuple[list[TrainingClip], list[SkippedClip]]:
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and not (exclude is not None and p.resolve().is_relative_to(exclude.resolve()))
    )
    clips, skipped = [], []
    for file in files:
        try:
            info = probe(file)
        except MediaError as exc:
            skipped.append(SkippedClip(file, f"unreadable: {exc.message}"))
            continue
        sidecar = file.with_suffix(".txt")
        caption = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else None
        clips.append(TrainingClip(file, info, 0, info.frame_count - 1, file.stem, caption))
    return clips, skipped


def _cut_clips(cut: Path) -> tuple[list[TrainingClip], list[SkippedClip]]:
    """Every enabled video clip of the cut, over the source range it uses."""
    from studio_nova.cut.ingest import (
        iter_video_clips,
        read_timeline,
        source_frames,
    )
    from studio_nova.cut.paths import resolve_media

    timeline = read_timeline(cut)
    clips, skipped = [], []
    probes: dict[Path, MediaInfo | MediaError] = {}
    for key, clip in iter_video_clips(timeline):
        try:
            media = resolve_media(clip, cut.parent, key=key)
            if media not in probes:
                try:
                    probes[media] = probe(media)
                except MediaError as exc:
                    probes[media] = exc
            found = probes[media]
            if isinstance(found, MediaError):
                skipped.append(SkippedClip(media, f"clip {clip.name!r} ({key}) unreadable: {found.message}"))
                continue
            first, last = source_frames(clip, found, key=key)
        except StudioNovaError as exc:
            skipped.append(SkippedClip(exc.path or cut, f"clip {clip.name!r} ({key}): {exc.message}"))
            continue
        meta = clip.metadata.get("studio_nova", {}) if hasattr(clip.metadata, "get") else {}
        caption = meta.get("caption") if hasattr(meta, "get") else None
        clips.append(TrainingClip(media, found, first, last, f"{clip.name} ({key})", str(caption) if caption else None))
    return clips, skipped


# ------------------------------------------------------------------------------------ reading


def fit_crop(frame: np.ndarray, height: int, width: int, fy: float, fx: float) -> np.ndarray:
    """Resize `frame` to cover `height`×`width` (aspect kept), then crop at (fy, fx) in [0, 1]
    of the slack (0 = top/left, 1 = bottom/right)."""
    h, w = frame.shape[:2]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        frame = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0, x0 = round(fy * (nh - height)), round(fx * (nw - width))
    return frame[y0:y0 + height, x0:x0 + width]


def read_window(
    clip: TrainingClip, start: int, frames: int, height: int, width: int, crop: tuple[float, float], flip: bool = False
) -> np.ndarray:
    """Frames `start`..`start+frames-1` of the clip (clip-relative) at the model's size, float32
    RGB in [0, 1]. Streamed: each decoded frame is resized as it arrives."""
    out = np.empty((frames, height, width, 3), np.float32)
    first = clip.first_frame + start
    for t, frame in enumerate(read_frames(clip.info, first, first + frames - 1)):
        small = to_float(fit_crop(frame, height, width, *crop))
        out[t] = small[:, ::-1] if flip else small
    return out


# ------------------------------------------------------------------------------------ samples


@dataclass(frozen=True)
class WindowPlan:
    """Where sample i comes from (drawn from the seed; nothing decoded yet)."""

    index: int
    clip: int
    start: int
    crop: tuple[float, float]
    other_clip: int
    other_start: int
    other_crop: tuple[float, float]
    other_flip: bool

    def to_dict(self, data: TrainingData) -> dict[str, Any]:
        target, other = data.clips[self.clip], data.clips[self.other_clip]
        return {"index": self.index, "clip": target.name, "path": str(target.path),
                "first_frame": target.first_frame + self.start, "other_clip": other.name,
                "other_first_frame": other.first_frame + self.other_start, "other_flipped": self.other_flip}


@dataclass
class TrainingSample:
    """One training example: the clean target and the two simulated conditions."""

    index: int
    target: np.ndarray  # (F, H, W, 3) float32 in [0, 1]: what the model must produce
    guide: np.ndarray  # (F, H, W, 3): sparse input, degraded keyframes interpolated
    is_known: np.ndarray  # (F,) bool: keyframe positions
    keyframes: dict[int, np.ndarray]  # degraded keyframes by frame index
    regions: dict[int, np.ndarray]  # degraded region of each keyframe
    pseudo_source: np.ndarray  # (F, H, W, 3): dense input, target with pasted content
    paste_masks: np.ndarray  # (F, H, W) in {0, 1}
    caption: str
    interval: int
    meta: dict[str, Any] = field(default_factory=dict)


class WindowDataset:
    """Training samples of `frames`×`height`×`width` from `data`, sample i a pure function of (seed, i)."""

    def __init__(
        self,
        data: TrainingData,
        *,
        frames: int,
        height: int,
        width: int,
        seed: int = 0,
        interval_range: tuple[int, int] = INTERVAL_RANGE,
        default_caption: str = "",
    ) -> None:
        if frames < 1 or height < 16 or width < 16:
            raise ValueError(f"frames >= 1 and a size of at least 16x16 are needed, got {frames}x{height}x{width}")
        too_short = [c.name for c in data.clips if c.frame_count < frames]
        if too_short:
            raise ValueError(f"clips shorter than a window of {frames} frames: {too_short[:3]}")
        self.data = data
        self.frames, self.height, self.width = frames, height, width
        self.seed = int(seed)
        self.interval_range = interval_range
        self.default_caption = default_caption
        windows = np.array([c.frame_count - frames + 1 for c in data.clips], np.float64)
        self._weights = windows / windows.sum()

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index)])

    def plan(self, index: int, rng: np.random.Generator | None = None) -> WindowPlan:
        rng = self.rng(index) if rng is None else rng
        clips = self.data.clips
        target = int(rng.choice(len(clips), p=self._weights))
        start = int(rng.integers(0, clips[target].frame_count - self.frames + 1))
        crop = (float(rng.random()), float(rng.random()))
        if len(clips) > 1:  # unrelated content: another clip
            weights = self._weights.copy()
            weights[target] = 0.0
            other = int(rng.choice(len(clips), p=weights / weights.sum()))
            other_start = int(rng.integers(0, clips[other].frame_count - self.frames + 1))
            flip = bool(rng.random() < 0.5)
        else:  # one clip only: the farthest window of it, mirrored
            other = target
            last = clips[target].frame_count - self.frames
            other_start = last if start < last / 2 else 0
            flip = True
        other_crop = (float(rng.random()), float(rng.random()))
        return WindowPlan(index, target, start, crop, other, other_start, other_crop, flip)

    def __getitem__(self, index: int) -> TrainingSample:
        rng = self.rng(index)
        plan = self.plan(index, rng)
        clip = self.data.clips[plan.clip]
        target = read_window(clip, plan.start, self.frames, self.height, self.width, plan.crop)
        other = read_window(self.data.clips[plan.other_clip], plan.other_start, self.frames, self.height,
                            self.width, plan.other_crop, plan.other_flip)
        control = anchored_control(target, rng, interval_range=self.interval_range)
        fidelity = source_fidelity(target, other, rng)
        return TrainingSample(
            index=index,
            target=target,
            guide=control.guide,
            is_known=control.is_known,
            keyframes=control.keyframes,
            regions=control.regions,
            pseudo_source=fidelity.pseudo_source,
            paste_masks=fidelity.masks,
            caption=clip.caption if clip.caption is not None else self.default_caption,
            interval=control.interval,
            meta={**plan.to_dict(self.data), "interval": control.interval,
                  "degradations": {str(k): [d.to_dict() for d in v] for k, v in control.degradations.items()}},
        )

    def captions(self) -> list[str]:
        """Every text condition a sample can carry (each is encoded once)."""
        found = {c.caption if c.caption is not None else self.default_caption for c in self.data.clips}
        return sorted(found)


@dataclass
class WindowSampler:
    """The data position of a run: sample indices 0, 1, 2, … in order. Restoring `position`
    restores the data order exactly (samples are pure functions of their index)."""

    seed: int
    position: int = 0

    def __iter__(self) -> Iterator[int]:
        while True:
            yield self.next_index()

    def next_index(self) -> int:
        index = self.position
        self.position += 1
        return index

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state is for seed {state['seed']}, this run has seed {self.seed}")
        self.position = int(state["position"])
