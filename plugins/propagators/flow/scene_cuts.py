"""Scene cuts inside a chunk, and the known frames each frame may take its edit from.

A chunk may hold a cut, and where things are on one side of it says nothing about the other:
an edit's spatial part is never carried across one. Its colour part still is when a scene has
no known frame of its own (a grade applies to a new picture as well).
"""

from __future__ import annotations

import cv2
import numpy as np

from .optical_flow import eight_bit, pixel_grid, warp

_CUT_SIDE = 160  # long side of the thumbnails that scene cuts are found on


def scene_ids(frames: np.ndarray) -> np.ndarray:
    """Scene index of every frame: a chunk may hold a cut, and an edit is not carried across one.

    A cut is where consecutive frames differ far more than the chunk's typical pair does, both
    after motion compensation (a new picture, not a fast pan) and in their colour histograms
    (not a flash or a fast occluder alone).
    """
    n = len(frames)
    ids = np.zeros(n, np.int64)
    if n < 3:
        return ids
    h, w = frames.shape[1:3]
    scale = _CUT_SIDE / max(h, w)  # by the long side: a tall frame gives no 40,000-pixel thumbnail
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = [cv2.resize(eight_bit(frame), size, interpolation=cv2.INTER_AREA) for frame in frames]
    greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in small]
    hists = []
    for f in small:
        hist = cv2.calcHist([f], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
        hists.append(hist / max(hist.sum(), 1.0))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    gx, gy = pixel_grid((0, size[1], 0, size[0]))
    moved, recoloured = np.empty(n - 1), np.empty(n - 1)
    for i in range(n - 1):
        flow = dis.calc(greys[i], greys[i + 1], None)
        seen = warp(greys[i + 1], gx, gy, flow)
        moved[i] = np.abs(seen.astype(np.float32) - greys[i]).mean()
        recoloured[i] = 0.5 * np.abs(hists[i] - hists[i + 1]).sum()
    # Thresholds over the chunk's own typical pair (cuts are rare, so the median is a normal
    # pair): bikes.mp4's cuts sit at 45-86 grey levels and 0.25-0.76, its pans below 14 / 0.14.
    cut = ((moved > 3.0 * np.median(moved) + 10.0)
           & (recoloured > 3.0 * np.median(recoloured) + 0.08))
    ids[1:] = np.cumsum(cut)
    return ids


def neighbours(t: int, known: list[int],
               scenes: np.ndarray) -> tuple[int | None, int | None, bool]:
    """The known frames that frame t is made from, and whether their spatial part may be used.

    The nearest known frame on each side within t's scene; when its scene has none, the nearest
    ones across cuts, for their colour part only (a grade still applies to a new picture; where
    things are does not)."""
    same = [k for k in known if scenes[k] == scenes[t]]
    left = max((k for k in same if k < t), default=None)
    right = min((k for k in same if k > t), default=None)
    if left is not None or right is not None:
        return left, right, True
    left = max((k for k in known if k < t), default=None)
    right = min((k for k in known if k > t), default=None)
    return left, right, False
