"""Background replacement at render time: the shot's matte and background sources fused
frame by frame (the request itself is parsed in `studio_nova.cut.background_request`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio_nova.config import Settings
from studio_nova.cut.background_request import BackgroundRequest
from studio_nova.errors import EditRequestError
from studio_nova.media.compositing import (
    CLEAR,
    OPAQUE,
    composite,
    edge_band,
    fill_from,
)
from studio_nova.media.frames import to_float
from studio_nova.media.info import MediaInfo
from studio_nova.plugin_api.backgrounds import BackgroundContext, check_background
from studio_nova.plugin_api.mattes import Matte, MatteContext, check_matte
from studio_nova.plugin_api.propagation import CompositeGuide
from studio_nova.plugin_api.registry import BACKGROUNDS, MATTES, load_plugin

BATCH_FRAMES = 16  # frames the matte source keys at a time (plus its temporal context)


@dataclass
class Fused:
    """Frames fused from the source's subject and the new background."""

    images: np.ndarray  # (N, H, W, 3) float32
    alpha: np.ndarray  # (N, H, W) float32: the matte as used
    changed: np.ndarray  # (N, H, W) float32: how much of each pixel is not the source's
    background: np.ndarray  # (N, H, W, 3) float32: the new background alone

    def guide(self) -> CompositeGuide:
        return CompositeGuide(frames=self.images, alpha=self.alpha, changed=self.changed, background=self.background)


class BackgroundReplacement:
    """One shot's matte source and background source, and how to fuse them.

    `settings` are the run's (the workspace's): both sources receive them in their contexts.
    """

    def __init__(
        self,
        request: BackgroundRequest,
        *,
        shot: str,
        media: MediaInfo,
        first_frame: int,
        last_frame: int,
        seed: int = 0,
        instruction: str = "",
        cache_dir: Path | None = None,
        settings: Settings,
    ) -> None:
        self.request = request
        self.settings = settings
        self.shot, self.media = shot, media
        self.first_frame, self.last_frame = first_frame, last_frame
        base = Path(request.base_dir) if request.base_dir else None
        self.base_dir = base
        self.matte_source = load_plugin(MATTES, request.matte, **request.matte_params)
        self.background_source = load_plugin(BACKGROUNDS, request.background, **request.background_params)
        self.context = BackgroundContext(
            shot=shot,
            width=media.width,
            height=media.height,
            rate=media.rate,
            frame_count=last_frame - first_frame + 1,
            seed=seed,
            base_dir=base,
            instruction=instruction,
            cache_dir=cache_dir,
            settings=settings,
        )

    def mattes(self, frames: np.ndarray, first: int) -> Matte:
        context = MatteContext(
            shot=self.shot, media=self.media, first_frame=first, frames=frames, base_dir=self.base_dir,
            settings=self.settings,
        )
        return check_matte(self.matte_source.mattes(context), context, self.request.matte)

    def backgrounds(self, first: int, count: int) -> np.ndarray:
        offsets = list(range(first - self.first_frame, first - self.first_frame + count))
        frames = self.background_source.frames(self.context, offsets)
        return check_background(frames, self.context, offsets, self.request.background)

    def fuse(self, frames: np.ndarray, first: int, batch: int = BATCH_FRAMES) -> Fused:
        """Fuse consecutive source frames `first`.. (uint8 | uint16, as decoded).

        The matte source sees `batch` frames at a time plus `context_frames` of the given frames
        on either side (its temporal reach; a stateful tracker carries its mask over that
        overlap), so memory grows with the batch, not the chunk: a whole 81-frame chunk of
        mattes, clean plates and unmixed foregrounds at 1080p would take over 10 GB.
        """
        n = len(frames)
        if first < self.first_frame or first + n - 1 > self.last_frame:
            raise EditRequestError(
                f"frames {first}..{first + n - 1} are outside the shot "
                f"({self.first_frame}..{self.last_frame})", shot=self.shot, frame=first,
            )
        h, w = frames.shape[1:3]
        out = Fused(
            images=np.empty((n, h, w, 3), np.float32), alpha=np.empty((n, h, w), np.float32),
            changed=np.empty((n, h, w), np.float32), background=self.backgrounds(first, n),
        )
        context = max(0, int(getattr(self.matte_source, "context_frames", 2)))
        for start in range(0, n, max(1, batch)):
            stop = min(n, start + max(1, batch))
            lo, hi = max(0, start - context), min(n, stop + context)
            matte = self.mattes(frames[lo:hi], first + lo)
            for t in range(start, stop):
                k = t - lo
                fused = composite(
                    to_float(frames[t]),
                    matte.alpha[k],
                    out.background[t],
                    behind=None if matte.background is None else matte.background[k],
                    foreground=None if matte.foreground is None else matte.foreground[k],
                    options=self.request.options,
                )
                out.images[t], out.alpha[t], out.changed[t] = fused.image, fused.alpha, fused.changed
            del matte
        return out

    @property
    def sequential(self) -> bool:
        """Whether the matte source must see the shot's frames in order from its start (a tracker)."""
        return bool(getattr(self.matte_source, "sequential", False))


# -------------------------------------------------------------------------------------- QC


def background_qc(
    source: np.ndarray,
    output: np.ndarray,
    alpha: np.ndarray,
    background: np.ndarray,
    edge_px: int = 6,
    core: np.ndarray | None = None,
) -> dict[str, float | None]:
    """QC figures of a background replacement over consecutive frames (float32 in [0, 1]).

    - `fg_fidelity_db`: PSNR of the output against the source deep inside the matte: where the
      compositing left the subject alone (`core`, e.g. the guide's `changed == 0`), else opaque
      and more than `edge_px` from the matte's edge. The subject must be the source there.
    - `bg_motion` / `plate_motion`: mean absolute change between consecutive frames, in 8-bit
      levels, of the output's clear background and of the new background itself; their ratio
      `bg_motion_ratio` is ≈ 1 when the output's background moves as the plate does, ≈ 0 when the
      result froze it.
    - `edge_bleed`: in the band of semi-transparent matte, how far (8-bit levels) the output
      leans towards the old background's colour beyond the mix of subject and new background
      that the matte calls for; `edge_halo`: the same distance in any direction.
    """
    n = len(source)
    if core is not None:
        deep = np.asarray(core, bool) & (alpha >= OPAQUE)
    else:
        deep = np.stack([(alpha[t] >= OPAQUE) & (edge_band(alpha[t], edge_px) <= 0) for t in range(n)])
    fidelity = None
    if deep.any():
        err = float(np.mean((output[deep] - source[deep]) ** 2))
        fidelity = 100.0 if err == 0 else min(100.0, 10.0 * np.log10(1.0 / err))
    bg_motion = plate_motion = None
    if n > 1:
        clear = (alpha[1:] <= CLEAR) & (alpha[:-1] <= CLEAR)
        if clear.any():
            bg_motion = float(np.abs(output[1:] - output[:-1])[clear].mean() * 255.0)
            plate_motion = float(np.abs(background[1:] - background[:-1])[clear].mean() * 255.0)
    bleed, halo, count = 0.0, 0.0, 0
    for t in range(n):
        a = alpha[t]
        band = (a > 0.05) & (a < 0.95)
        if not band.any():
            continue
        behind = fill_from(source[t], (a <= 0.02).astype(np.float32))
        subject = fill_from(source[t], ((a >= OPAQUE) & (edge_band(a, 2) <= 0)).astype(np.float32))
        expected = a[..., None] * subject + (1.0 - a[..., None]) * background[t]
        off = (output[t] - expected)[band]
        towards = behind[band] - expected[band]
        unit = towards / np.maximum(np.linalg.norm(towards, axis=-1, keepdims=True), 1e-6)
        bleed += float(np.maximum((off * unit).sum(axis=-1), 0.0).sum())
        halo += float(np.linalg.norm(off, axis=-1).sum())
        count += int(band.sum())
    ratio = None if not plate_motion else (bg_motion or 0.0) / plate_motion
    return {
        "fg_fidelity_db": None if fidelity is None else round(float(fidelity), 3),
        "bg_motion": None if bg_motion is None else round(bg_motion, 4),
        "plate_motion": None if plate_motion is None else round(plate_motion, 4),
        "bg_motion_ratio": None if ratio is None else round(ratio, 4),
        "edge_bleed": round(bleed / count * 255.0, 4) if count else None,
        "edge_halo": round(halo / count * 255.0, 4) if count else None,
        "edge_pixels": count,
    }
