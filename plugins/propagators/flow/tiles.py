"""The tile grid of the sparse passes: work is done only in the 64-pixel tiles an edit reaches.

Both the fit of a known frame's spatial model and its evaluation on other frames cost time per
pixel, while an edit usually covers a few places of the frame. Both walk the same grid, as runs
of set tiles along each tile row, so a sparse edit costs its tiles and not its bounding box.
"""

from __future__ import annotations

import numpy as np

TILE = 64  # full-size tile of the sparse spatial passes

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 in full-size pixels


def covered_tiles(mask: np.ndarray) -> np.ndarray:
    """The tiles (tile rows × tile columns) that hold any set pixel of a full-size mask."""
    h, w = mask.shape
    ny, nx = -(-h // TILE), -(-w // TILE)
    padded = np.zeros((ny * TILE, nx * TILE), bool)
    padded[:h, :w] = mask
    return padded.reshape(ny, TILE, nx, TILE).any(axis=(1, 3))


def tile_runs(tiles: np.ndarray, h: int, w: int, pad: int) -> list[tuple[Box, Box]]:
    """Runs of set TILE-pixel tiles along each tile row, as (inner box, box padded by `pad`),
    boxes as (y0, y1, x0, x1) clipped to the h×w frame."""
    out = []
    for ty in np.flatnonzero(tiles.any(axis=1)):
        row = np.concatenate([[False], tiles[ty], [False]])
        edges = np.flatnonzero(row[1:] != row[:-1])
        for start, stop in zip(edges[::2], edges[1::2]):
            y0, y1 = int(ty) * TILE, min(h, (int(ty) + 1) * TILE)
            x0, x1 = int(start) * TILE, min(w, int(stop) * TILE)
            padded = (max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad))
            out.append(((y0, y1, x0, x1), padded))
    return out
