"""Fusing a subject and a new background along a matte (background replacement, DESIGN section 1).

The decoupled answer to background replacement: the foreground is the source's own pixels, the
new background is built on its own, and the two are fused along the matte,

    out = a * F + (1 - a) * B_new

where `F` is the subject's colour *unmixed* from the old background at semi-transparent edges
(`F = (C - (1 - a) * G) / a`, with `G` what was behind the subject). Without the unmixing the old
background bleeds into every soft edge (a green fringe on a green-screen shot); with it an edge
pixel carries only the subject's share of its colour.

Where the matte is fully opaque and far from an edge, `out` is the source pixel, bit for bit:
every treatment here (despill, light wrap) is confined to a band of `edge_px` pixels around the
matte edge. All images are float32 RGB in [0, 1]; mattes float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OPAQUE = 0.999  # alpha at or above this is "fully foreground"
CLEAR = 0.001  # alpha at or below this is "fully background"


@dataclass(frozen=True)
class CompositeOptions:
    """How the subject sits on its new background; every length is in source pixels.

    `feather`: Gaussian softening of the matte edge (None: 1 px for a hard, binary matte and none
    for a matte that is already soft). `spill`: suppress old-screen colour on the subject's edge
    ("none" | "green" | "blue" | "auto": from the old background's dominant channel).
    `light_wrap`: how much of the new background's light spills onto the subject's edge, over
    `wrap_px`. `edge_px`: the band around the matte edge that the treatments may touch; deeper
    inside, the subject is the source.
    """

    feather: float | None = None
    spill: str = "auto"
    spill_strength: float = 1.0
    light_wrap: float = 0.15
    wrap_px: float = 2.0
    edge_px: int = 6

    def __post_init__(self) -> None:
        if self.spill not in ("none", "green", "blue", "auto"):
            raise ValueError(f"spill must be none|green|blue|auto, got {self.spill!r}")
        for name in ("spill_strength", "light_wrap", "wrap_px"):
            if not 0.0 <= float(getattr(self, name)) <= (1.0 if name != "wrap_px" else 64.0):
                raise ValueError(f"{name} out of range: {getattr(self, name)!r}")
        if self.feather is not None and not 0.0 <= self.feather <= 32.0:
            raise ValueError(f"feather must be 0..32 px, got {self.feather!r}")
        if not 0 <= int(self.edge_px) <= 64:
            raise ValueError(f"edge_px must be 0..64, got {self.edge_px!r}")


# ----------------------------------------------------------------------------------- filling


def fill_from(image: np.ndarray, weight: np.ndarray, levels: int | None = None) -> np.ndarray:
    """Fill every pixel of `image` from the pixels where `weight` is high (push-pull pyramid).

    A normalised-convolution pyramid: near known pixels the result is their local average, far
    from them it is a smooth continuation from coarser levels. Used to guess what was behind the
    subject (weight: clear background) and the subject's own colour near its edge (weight:
    opaque foreground).
    """
    image = np.asarray(image, np.float32)
    weight = np.clip(np.asarray(weight, np.float32), 0.0, 1.0)
    h, w = weight.shape
    if levels is None:
        levels = max(1, int(np.log2(max(h, w))) - 1)
    nums, weights = [image * weight[..., None]], [weight]
    for _ in range(levels):
        if min(weights[-1].shape) < 2:
            break
        nums.append(cv2.pyrDown(nums[-1]))
        weights.append(cv2.pyrDown(weights[-1]))
    top_w = weights[-1]
    total = float(top_w.sum())
    if total <= 0:
        return np.zeros_like(image)
    mean = nums[-1].reshape(-1, 3).sum(axis=0) / total
    result = np.where(top_w[..., None] > 1e-6, nums[-1] / np.maximum(top_w, 1e-6)[..., None], mean)
    for num, wt in zip(reversed(nums[:-1]), reversed(weights[:-1])):
        up = cv2.resize(result, (wt.shape[1], wt.shape[0]), interpolation=cv2.INTER_LINEAR)
        value = num / np.maximum(wt, 1e-6)[..., None]
        conf = np.clip(wt * 4.0, 0.0, 1.0)[..., None]  # a quarter-covered neighbourhood is trusted
        result = conf * value + (1.0 - conf) * up
    return result.astype(np.float32)


def estimate_behind(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What was behind the subject, filled in from the clear background around it."""
    return fill_from(image, (alpha <= 0.02).astype(np.float32))


def unmix(image: np.ndarray, alpha: np.ndarray, behind: np.ndarray, min_alpha: float = 0.1) -> np.ndarray:
    """The subject's own colour: `(C - (1 - a) G) / a`, continued from the subject where `a` is too
    small for the division to mean anything; the source itself where the matte is opaque."""
    a = alpha[..., None]
    solved = np.clip((image - (1.0 - a) * behind) / np.maximum(a, min_alpha), 0.0, 1.0)
    trusted = np.clip((alpha - min_alpha) / min_alpha, 0.0, 1.0)
    if (trusted < 1).any():
        continued = fill_from(solved, (alpha >= 0.5).astype(np.float32) * trusted)
        solved = trusted[..., None] * solved + (1.0 - trusted[..., None]) * continued
    return np.where((alpha >= OPAQUE)[..., None], image, solved).astype(np.float32)


def despill(image: np.ndarray, channel: int, strength: float = 1.0) -> np.ndarray:
    """Limit `channel` to the larger of the other two: screen light on the subject's edge goes,
    while yellows and cyans (green as high as red, or as blue) keep their colour."""
    others = [c for c in range(3) if c != channel]
    limit = np.maximum(image[..., others[0]], image[..., others[1]])
    excess = np.maximum(image[..., channel] - limit, 0.0)
    out = image.copy()
    out[..., channel] = image[..., channel] - strength * excess
    return out


def despill_towards(
    image: np.ndarray, foreground: np.ndarray, alpha: np.ndarray, band: np.ndarray, channel: int
) -> np.ndarray:
    """Take out screen light that a limiter cannot see (a green cast on a red shirt stays below
    red): near the edge, the key channel may rise above the subject's own colour just inside no
    more than the other channels do. The subject's colour comes from the solid pixels beyond the
    band, continued outwards."""
    solid = (alpha >= OPAQUE) & (band <= 0)
    if not solid.any():
        return image
    inner = fill_from(foreground, solid.astype(np.float32))
    rise = image - inner
    others = [c for c in range(3) if c != channel]
    excess = rise[..., channel] - np.maximum(rise[..., others[0]], rise[..., others[1]])
    out = image.copy()
    out[..., channel] = image[..., channel] - np.maximum(excess, 0.0) * (band > 0)
    return out


def spill_channel(spill: str, behind: np.ndarray, alpha: np.ndarray) -> int | None:
    """Which channel to despill: asked for, or the old background's dominant one when it is a screen."""
    if spill == "green":
        return 1
    if spill == "blue":
        return 2
    if spill == "none":
        return None
    clear = alpha <= 0.02
    if not clear.any():
        return None
    mean = behind[clear].mean(axis=0)
    dominant = int(np.argmax(mean))
    others = [c for c in range(3) if c != dominant]
    is_screen = dominant in (1, 2) and mean[dominant] > 1.3 * max(mean[others[0]], mean[others[1]]) + 0.02
    return dominant if is_screen else None


# -------------------------------------------------------------------------------- compositing


def edge_band(alpha: np.ndarray, px: int) -> np.ndarray:
    """1 on the matte edge fading to 0 at `px` pixels inside the opaque subject; 1 outside it."""
    opaque = (alpha >= OPAQUE).astype(np.uint8)
    if px <= 0:
        return 1.0 - opaque.astype(np.float32)
    inside = cv2.distanceTransform(opaque, cv2.DIST_L2, 3)
    return np.clip(1.0 - inside / float(px), 0.0, 1.0).astype(np.float32)


def is_binary(alpha: np.ndarray) -> bool:
    return bool(((alpha <= CLEAR) | (alpha >= OPAQUE)).all())


def feather(alpha: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return alpha
    return np.clip(cv2.GaussianBlur(alpha, (0, 0), sigma), 0.0, 1.0).astype(np.float32)


@dataclass
class Composite:
    """One fused frame and what it was made of."""

    image: np.ndarray  # (H, W, 3) float32
    alpha: np.ndarray  # (H, W) float32: the matte as used (after feathering)
    changed: np.ndarray  # (H, W) float32 in [0, 1]: how much of each pixel is not the source's


def composite(
    source: np.ndarray,
    alpha: np.ndarray,
    background: np.ndarray,
    *,
    behind: np.ndarray | None = None,
    foreground: np.ndarray | None = None,
    options: CompositeOptions = CompositeOptions(),
) -> Composite:
    """Fuse one source frame's subject over a new background along its matte."""
    source = np.asarray(source, np.float32)
    alpha = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0)
    background = np.asarray(background, np.float32)
    sigma = options.feather if options.feather is not None else (1.0 if is_binary(alpha) else 0.0)
    used = feather(alpha, sigma)
    if behind is None:
        behind = estimate_behind(source, used)
    if foreground is None or sigma > 0:
        foreground = unmix(source, used, behind)
    band = edge_band(used, options.edge_px)

    channel = spill_channel(options.spill, behind, used) if options.spill_strength > 0 else None
    if channel is not None:
        cleaned = despill_towards(despill(foreground, channel), foreground, used, band, channel)
        foreground = foreground + (options.spill_strength * band)[..., None] * (cleaned - foreground)

    a = used[..., None]
    out = a * foreground + (1.0 - a) * background
    if options.light_wrap > 0 and options.wrap_px > 0:
        clear = 1.0 - used
        spread = cv2.GaussianBlur(clear, (0, 0), options.wrap_px)
        light = cv2.GaussianBlur(background * clear[..., None], (0, 0), options.wrap_px)
        light = light / np.maximum(spread, 1e-4)[..., None]
        amount = (options.light_wrap * used * spread * band)[..., None]
        out = out + amount * (np.maximum(out, light) - out)  # screen-like: light only adds

    out = np.clip(out, 0.0, 1.0)
    untouched = (used >= OPAQUE) & (band <= 0.0)
    out = np.where(untouched[..., None], source, out).astype(np.float32)
    differs = np.abs(out - source).max(axis=-1) > 0
    changed = np.where(differs, np.maximum(1.0 - used, 1.0 / 255.0), 0.0)
    return Composite(image=out, alpha=used, changed=changed.astype(np.float32))
