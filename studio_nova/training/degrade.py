"""Degradation simulation: the two self-supervised inputs NOVA trains on (DESIGN section 1).

No edited pairs exist for a studio's own footage, so both conditions are simulated from one
clean clip `x` (the target the model must reproduce):

- *anchored control* (the sparse branch's input): keyframes are sampled from `x` at a random
  interval, a random region `b` of each is degraded, `x̂ = (1−b)⊙x + b⊙D(x)` (Gaussian blur,
  affine warp, colour shift, noise, resolution loss, JPEG artefacts), and the keyframes are
  interpolated into a full sequence with `interpolate_known`, the very function inference uses.
  The model learns that keyframes say *what* to show, not every pixel of it;
- *source fidelity* (the dense branch's input): unrelated content `y` is cut and pasted into
  `x` through random moving masks, `x̃ = m⊙y + (1−m)⊙x`. The pasted content is wrong by
  construction, so the model learns to fetch from the source only what the keyframes agree with.

Everything here is plain numpy / OpenCV on float32 RGB in [0, 1] and draws its randomness from
the `numpy.random.Generator` it is given, so a sample is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from studio_nova.pipelines.nova_pipeline import interpolate_known

INTERVAL_RANGE = (8, 20)  # keyframe intervals the model is robust to (DESIGN section 1)


# ------------------------------------------------------------------------------ degradations


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation `sigma` pixels (edges reflected)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


def affine_warp(image: np.ndarray, angle: float, scale: float, dx: float, dy: float) -> np.ndarray:
    """Rotate by `angle` degrees and scale about the centre, then shift by (dx, dy) pixels."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(angle), float(scale))
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def colour_shift(image: np.ndarray, gain: Sequence[float], offset: Sequence[float], gamma: float = 1.0) -> np.ndarray:
    """Per-channel gain and offset after a gamma: an editor's drift in grade."""
    out = np.power(np.clip(image, 0.0, 1.0), np.float32(gamma)) if gamma != 1.0 else image
    out = out * np.asarray(gain, np.float32) + np.asarray(offset, np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def add_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Additive Gaussian noise of standard deviation `sigma` (seeded: the same params, the same noise)."""
    noise = np.random.default_rng(seed).standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(image + noise, 0.0, 1.0)


def downsample(image: np.ndarray, factor: float) -> np.ndarray:
    """Resolution loss: shrink by `factor` (area) and enlarge back (linear)."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG compression artefacts at `quality` (0–100)."""
    samples = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    ok, buffer = cv2.imencode(".jpg", samples, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a keyframe")
    return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED).astype(np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class Degradation:
    """One degradation and its parameters (JSON-able, so a sample can say what was done)."""

    kind: str
    params: dict[str, Any]

    def apply(self, image: np.ndarray) -> np.ndarray:
        return DEGRADATIONS[self.kind](image, **self.params).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}


DEGRADATIONS: dict[str, Callable[..., np.ndarray]] = {
    "blur": gaussian_blur,
    "warp": affine_warp,
    "colour": colour_shift,
    "noise": add_noise,
    "downsample": downsample,
    "jpeg": jpeg,
}


def random_degradation(rng: np.random.Generator, height: int, width: int, kind: str | None = None) -> Degradation:
    """A degradation of `kind` (default: any) with random, size-aware parameters."""
    kind = str(rng.choice(list(DEGRADATIONS))) if kind is None else kind
    side = min(height, width)
    if kind == "blur":
        params: dict[str, Any] = {"sigma": float(rng.uniform(0.8, max(1.6, 0.012 * side)))}
    elif kind == "warp":
        params = {
            "angle": float(rng.uniform(-8.0, 8.0)),
            "scale": float(rng.uniform(0.92, 1.08)),
            "dx": float(rng.uniform(-0.04, 0.04) * width),
            "dy": float(rng.uniform(-0.04, 0.04) * height),
        }
    elif kind == "colour":
        params = {
            "gain": [float(g) for g in rng.uniform(0.8, 1.2, 3)],
            "offset": [float(o) for o in rng.uniform(-0.08, 0.08, 3)],
            "gamma": float(rng.uniform(0.8, 1.25)),
        }
    elif kind == "noise":
        params = {"sigma": float(rng.uniform(0.02, 0.08)), "seed": int(rng.integers(2**31))}
    elif kind == "downsample":
        params = {"factor": float(rng.uniform(2.0, 4.0))}
    elif kind == "jpeg":
        params = {"quality": int(rng.integers(10, 41))}
    else:
        raise ValueError(f"kind must be one of {sorted(DEGRADATIONS)}, got {kind!r}")
    return Degradation(kind, params)


def random_region(rng: np.random.Generator, height: int, width: int, *, full_frame_prob: float = 0.15) -> np.ndarray:
    """A soft region `b` (H, W) in [0, 1]: a feathered ellipse or rectangle covering roughly
    5–60% of the frame, or (with `full_frame_prob`) the whole frame. Its core is exactly 1."""
    if rng.random() < full_frame_prob:
        return np.ones((height, width), np.float32)
    hard = np.zeros((height, width), np.uint8)
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    ry, rx = rng.uniform(0.15, 0.45) * height, rng.uniform(0.15, 0.45) * width
    if rng.random() < 0.5:
        cv2.ellipse(hard, (round(cx), round(cy)), (max(1, round(rx)), max(1, round(ry))),
                    float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
    else:
        hard[max(0, round(cy - ry)):round(cy + ry), max(0, round(cx - rx)):round(cx + rx)] = 1
    feather = float(rng.uniform(0.02, 0.06) * min(height, width))
    soft = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigmaX=max(feather, 0.5))
    # Stretch so the inside of the shape is fully degraded and the outside fully clean.
    return np.clip((soft - 0.25) / 0.5, 0.0, 1.0).astype(np.float32)


def blend(clean: np.ndarray, degraded: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`(1−b)⊙x + b⊙D(x)`: the degraded image inside the region, the clean one outside."""
    b = region[..., None].astype(np.float32)
    return ((1.0 - b) * clean + b * degraded).astype(np.float32)


def degrade_keyframe(
    frame: np.ndarray,
    rng: np.random.Generator,
    *,
    kinds: Sequence[str] | None = None,
    max_ops: int = 2,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Degradation]]:
    """Degrade a random region of one keyframe with 1..`max_ops` degradations (of `kinds`,
    default all). Returns the degraded keyframe, its region `b`, and what was applied."""
    height, width = frame.shape[:2]
    pool = list(kinds) if kinds else list(DEGRADATIONS)
    count = int(rng.integers(1, min(max_ops, len(pool)) + 1))
    chosen = [str(k) for k in rng.choice(pool, size=count, replace=False)]
    ops = [random_degradation(rng, height, width, kind) for kind in chosen]
    if region is None:
        region = random_region(rng, height, width)
    damaged = frame.astype(np.float32)
    for op in ops:
        damaged = op.apply(damaged)
    return blend(frame, damaged, region), region, ops


# --------------------------------------------------------------------------- anchored control


def keyframe_indices(frames: int, interval: int) -> list[int]:
    """Keyframes every `interval` frames from the first, and always the last (DESIGN section 4:
    no frame is extrapolated)."""
    if frames < 1 or interval < 1:
        raise ValueError(f"frames and interval must be at least 1, got {frames}, {interval}")
    index = list(range(0, frames, interval))
    if index[-1] != frames - 1:
        index.append(frames - 1)
    return index


@dataclass
class AnchoredControl:
    """The sparse branch's input of one sample, built as inference builds it."""

    guide: np.ndarray  # (F, H, W, 3) float32: degraded keyframes, linearly interpolated
    is_known: np.ndarray  # (F,) bool: which frames are keyframes
    keyframes: dict[int, np.ndarray]  # frame index -> degraded keyframe
    regions: dict[int, np.ndarray]  # frame index -> degraded region b (H, W)
    degradations: dict[int, list[Degradation]] = field(default_factory=dict)
    interval: int = 10


def anchored_control(
    clip: np.ndarray,
    rng: np.random.Generator,
    *,
    interval_range: tuple[int, int] = INTERVAL_RANGE,
    kinds: Sequence[str] | None = None,
) -> AnchoredControl:
    """Keyframes of `clip` (F, H, W, 3) at a random interval in `interval_range` (inclusive),
    a random region of each degraded, interpolated with `interpolate_known`."""
    low, high = interval_range
    if not 1 <= low <= high:
        raise ValueError(f"interval_range must be (low, high) with 1 <= low <= high, got {interval_range}")
    frames = clip.shape[0]
    interval = int(rng.integers(low, high + 1))
    keyframes: dict[int, np.ndarray] = {}
    regions: dict[int, np.ndarray] = {}
    applied: dict[int, list[Degradation]] = {}
    for index in keyframe_indices(frames, interval):
        keyframes[index], regions[index], applied[index] = degrade_keyframe(clip[index], rng, kinds=kinds)
    guide, is_known = interpolate_known(keyframes, frames)
    return AnchoredControl(guide, is_known, keyframes, regions, applied, interval)


# ---------------------------------------------------------------------------- source fidelity


def moving_masks(
    rng: np.random.Generator,
    frames: int,
    height: int,
    width: int,
    *,
    shapes: tuple[int, int] = (1, 3),
    size: tuple[float, float] = (0.15, 0.4),
) -> np.ndarray:
    """Binary masks (F, H, W) float32 in {0, 1}: 1..3 ellipses or rotated rectangles, each
    moving on a straight line between two points inside the frame and turning as it goes.
    `size`: the range of a shape's half-axes as a share of the frame's sides."""
    masks = np.zeros((frames, height, width), np.uint8)
    for _ in range(int(rng.integers(shapes[0], shapes[1] + 1))):
        ellipse = bool(rng.random() < 0.5)
        ry, rx = rng.uniform(*size) * height, rng.uniform(*size) * width
        start = rng.uniform(0.1, 0.9, 2) * (width, height)
        end = rng.uniform(0.1, 0.9, 2) * (width, height)
        angle0, turn = rng.uniform(0, 180), rng.uniform(-45, 45)
        for t in range(frames):
            a = t / max(frames - 1, 1)
            cx, cy = (1 - a) * start + a * end
            angle = angle0 + a * turn
            if ellipse:
                cv2.ellipse(masks[t], (round(cx), round(cy)), (max(1, round(rx)), max(1, round(ry))),
                            float(angle), 0, 360, 1, thickness=-1)
            else:
                box = cv2.boxPoints(((float(cx), float(cy)), (2 * float(rx), 2 * float(ry)), float(angle)))
                cv2.fillPoly(masks[t], [np.round(box).astype(np.int32)], 1)
    return masks.astype(np.float32)


def cut_and_paste(target: np.ndarray, other: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """`x̃ = m⊙y + (1−m)⊙x`: `other` inside the masks, `target` outside (F, H, W, 3)."""
    if target.shape != other.shape or masks.shape != target.shape[:3]:
        raise ValueError(
            f"target {target.shape}, other {other.shape} and masks {masks.shape} do not fit together"
        )
    m = masks[..., None].astype(np.float32)
    return (m * other + (1.0 - m) * target).astype(np.float32)


@dataclass
class SourceFidelity:
    """The dense branch's input of one sample: the pseudo-source and where it lies."""

    pseudo_source: np.ndarray  # (F, H, W, 3) float32
    masks: np.ndarray  # (F, H, W) float32 in {0, 1}: where `other` was pasted


def source_fidelity(target: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> SourceFidelity:
    """Paste `other` (unrelated content, same shape) into `target` through random moving masks."""
    frames, height, width = target.shape[:3]
    masks = moving_masks(rng, frames, height, width)
    return SourceFidelity(cut_and_paste(target, other, masks), masks)
