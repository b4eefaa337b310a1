"""The colour part of an edit: a reliability-weighted 3-D LUT of the delta as a function of colour.

A grade or a keyed recolour is a rule from colour to edit. Fitted from a known frame and looked
up on every other frame's own pixels, it needs no flow, so edited colours that move or newly
appear are edited too. Each colour also carries a *trust*: the table may act on a colour only
if, on the keyframe, it would not have visibly changed an untouched pixel of (nearly) that
colour and most such pixels were edited — so an edited object's untouched same-coloured twin is
not edited. What the table does not explain is left to the spatial part (`edit_model`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_SLOPE_RIDGE = 0.02  # ridge on a node's colour slopes, relative to its weight: a node whose
#                      pixels crowd one colour must not extrapolate a steep slope
_FINE = 33  # nodes per axis of the baked colour table (at least `lut_size`)
# The LUT may edit a colour only where it would (nearly) never visibly change — by more than
# _CONFLICT — a keyframe pixel the edit left untouched: up to _UNTOUCHED_SHARE of the edited
# ones are tolerated.
_CONFLICT = 0.5 / 255.0
_UNTOUCHED_SHARE = 0.005
_SHARE_LOW, _SHARE_HIGH = 0.3, 0.7  # edited share over which a colour's trust ramps up
_GLOBAL_SHARE = 0.95  # edited share of a keyframe from which unseen colours are edited too
_TRUST_PRIOR = 2.0  # pseudo-count of that prior in a colour's trust
_TRUST_LOW = 0.5  # interpolated trust below this is not trust


@dataclass
class ColourLut:
    """A fine 3-D table (size³ nodes; channels: delta RGB, mask, trust) laid out as a 2-D image
    (size rows, size·size columns; column = red + size·blue) so cv2.remap interpolates it."""

    table: np.ndarray  # (size, size*size, 5) float32
    size: int

    @staticmethod
    def blend(luts: list[ColourLut], weights: list[float]) -> ColourLut:
        """The edit interpolated between known frames; a colour is trusted only as far as every
        one of them trusts it (one keyframe showing it untouched is enough to doubt it)."""
        table = sum(w * lut.table for w, lut in zip(weights, luts))
        table[..., 4] = np.min([lut.table[..., 4] for lut in luts], axis=0)
        return ColourLut(table.astype(np.float32), luts[0].size)

    def at(self, colours: np.ndarray) -> np.ndarray:
        """Lookup of a list of colours (P, 3) → (P, 4), as a 2-D block for remap."""
        count = len(colours)
        if count == 0:
            return np.zeros((0, 4), np.float32)
        width = 256
        block = np.zeros((-(-count // width) * width, 3), np.float32)
        block[:count] = colours
        return self(block.reshape(-1, width, 3)).reshape(-1, 4)[:count]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(delta RGB, mask) of every pixel by its colour, faded by the colour's trust.

        Trilinear lookup: bilinear in (red, green) by remap on the two nearest blue slices,
        then linear in blue."""
        s = self.size
        scaled = image * np.float32(s - 1)
        blue = scaled[..., 2]
        b0 = np.clip(np.floor(blue), 0, s - 2)
        fb = (blue - b0)[..., None]
        mapx = scaled[..., 0] + b0 * np.float32(s)
        mapy = scaled[..., 1]
        lo = cv2.remap(self.table, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        hi = cv2.remap(self.table, mapx + np.float32(s), mapy, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        hi -= lo
        hi *= fb
        lo += hi
        # Partial trust comes from interpolating between trusted and doubted colours (object
        # rims, mixtures): only a clear majority of trusted neighbours lets the table act.
        trust = lo[..., 4:5]
        trust -= _TRUST_LOW
        trust *= 1.0 / (1.0 - _TRUST_LOW)
        np.clip(trust, 0.0, 1.0, out=trust)
        return lo[..., :4] * trust


def fit_lut(source: np.ndarray, delta: np.ndarray, mask: np.ndarray, n: int,
            tolerance: float, max_samples: int = 120_000) -> ColourLut:
    """Fit a local affine model of (delta, mask) against colour around every node of an n³ grid.

    Each node's fit uses all pixels within one node spacing, tent-weighted. Its residual spread
    says whether colour explains the edit there: where pixels of one colour got different
    edits the node's value fades to 0. `_colour_trust` then decides, from whether the keyframe
    showed the colour untouched anywhere, where the table may be applied at all; what it does
    not explain is left to the spatial model.
    """
    h, w = source.shape[:2]
    step = max(1, int(math.ceil(math.sqrt(h * w / max_samples))))
    c = source[::step, ::step].reshape(-1, 3).astype(np.float64)
    y = np.concatenate([delta[::step, ::step], mask[::step, ::step, None]], axis=-1)
    y = y.reshape(-1, 4).astype(np.float64)
    hstep = 1.0 / (n - 1)
    nodes = n**3
    # Per-pixel features about the origin; moments about each node follow analytically.
    feats = [np.ones(len(c))] + [c[:, i] for i in range(3)]
    feats += [c[:, i] * c[:, j] for i in range(3) for j in range(i, 3)]
    feats += [y[:, j] for j in range(4)]
    feats += [c[:, i] * y[:, j] for i in range(3) for j in range(4)]
    feats += [y[:, j] * y[:, j] for j in range(4)]
    mom = np.zeros((len(feats), nodes))
    for idx, wt in _corners(c, n):
        for m, f in enumerate(feats):
            mom[m] += np.bincount(idx, weights=wt * f, minlength=nodes)
    s0 = mom[0]
    sc = mom[1:4].T  # (nodes, 3)
    scc = np.empty((nodes, 3, 3))
    k = 4
    for i in range(3):
        for j in range(i, 3):
            scc[:, i, j] = scc[:, j, i] = mom[k]
            k += 1
    sy = mom[10:14].T  # (nodes, 4)
    scy = mom[14:26].T.reshape(nodes, 3, 4)
    syy = mom[26:30].T

    grid = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), -1)  # (b, g, r) order
    node_pos = grid[..., ::-1].reshape(-1, 3) * hstep  # node index = r + n·g + n²·b
    # Moments in local coordinates x = (c - node) / h.
    sx = (sc - node_pos * s0[:, None]) / hstep
    sxx = (scc - node_pos[:, :, None] * sc[:, None, :] - sc[:, :, None] * node_pos[:, None, :]
           + node_pos[:, :, None] * node_pos[:, None, :] * s0[:, None, None]) / hstep**2
    sxy = (scy - node_pos[:, :, None] * sy[:, None, :]) / hstep
    normal = np.zeros((nodes, 4, 4))
    normal[:, 0, 0] = s0
    normal[:, 0, 1:] = normal[:, 1:, 0] = sx
    normal[:, 1:, 1:] = sxx
    rhs = np.concatenate([sy[:, None, :], sxy], axis=1)  # (nodes, 4, 4 outputs)
    ridge = np.zeros((nodes, 4, 4))
    ridge[:, 0, 0] = 1e-9
    ridge[:, np.arange(1, 4), np.arange(1, 4)] = (_SLOPE_RIDGE * s0 + 1e-9)[:, None]
    theta = np.linalg.solve(normal + ridge, rhs)  # (nodes, 4 params, 4 outputs)
    sse = (syy - 2.0 * np.einsum("npo,npo->no", theta, rhs)
           + np.einsum("npo,npq,nqo->no", theta, normal, theta))
    spread = np.maximum(sse, 0.0) / np.maximum(s0, 1e-12)[:, None]
    # Spread within a code value is quantisation of the painted keyframe, not disagreement.
    spread = np.maximum(spread - (1.0 / 255.0) ** 2, 0.0)
    consistency = np.exp(-spread[:, :3].max(axis=1) / tolerance**2) * np.exp(-spread[:, 3] / 0.1**2)
    support = s0 / (s0 + 2.0)  # how well determined each node's fit is
    fine = max(_FINE, n)
    edited = mask[::step, ::step].ravel() > 0
    # Would the table visibly change pixels the edit left alone? Judged before fading: fading
    # hides a conflict at the faded colours only, while the colours next to them (an edited
    # object's shades that its untouched twin happens not to show here) keep their values.
    unfaded = _bake(theta, support, n, np.ones(fine**3), fine)
    wrong = np.zeros(len(c), bool)
    wrong[~edited] = np.abs(unfaded.at(c[~edited])[:, :3]).max(axis=-1) > _CONFLICT
    trust = _colour_trust(c, edited, wrong, fine)
    return _bake(theta * consistency[:, None, None], support, n, trust, fine)


def _corners(colours: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(node index, trilinear weight) of the 8 grid nodes around each colour (float64)."""
    pos = colours * (n - 1)
    base = np.clip(np.floor(pos), 0, n - 2)
    frac = pos - base
    base = base.astype(np.int64)
    out = []
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                idx = (base[:, 0] + dx) + n * (base[:, 1] + dy) + n * n * (base[:, 2] + dz)
                wx = frac[:, 0] if dx else 1.0 - frac[:, 0]
                wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
                wz = frac[:, 2] if dz else 1.0 - frac[:, 2]
                out.append((idx, wx * wy * wz))
    return out


def _colour_trust(colours: np.ndarray, edited: np.ndarray, wrong: np.ndarray,
                  fine: int) -> np.ndarray:
    """Per fine-grid node (index r + f·g + f²·b): how far the LUT may act on that colour.

    A LUT generalises from colour to colour; this says where it may. Near a colour where the
    table would visibly change pixels that the keyframe left untouched (`wrong`: an edited
    object's untouched twin, the rims of the two), a colour rule is wrong for some pixels, so
    the colour is left to the spatial model. Untouched pixels the table leaves alone (the soft
    edge of a key, the fixed points of a grade) are no objection. A colour the keyframe never
    showed is trusted only when the edit touched nearly everything (a global grade).
    """
    idx = np.rint(colours * (fine - 1)).astype(np.int64)
    flat = idx[:, 0] + fine * idx[:, 1] + fine * fine * idx[:, 2]
    size = fine**3
    total = np.bincount(flat, minlength=size).reshape(fine, fine, fine).astype(np.float64)
    hits = np.bincount(flat, weights=edited, minlength=size).reshape(fine, fine, fine)
    conflicts = np.bincount(flat, weights=wrong, minlength=size).reshape(fine, fine, fine)
    # Two node spacings around: the rims of objects are mixtures, each colour rare, so the
    # evidence must be gathered from a wider neighbourhood than one node.
    total, hits, conflicts = (_box3(_box3(x)) for x in (total, hits, conflicts))
    rule = np.clip(1.0 - conflicts / (_UNTOUCHED_SHARE * hits + 0.5), 0.0, 1.0)
    # A colour mostly seen untouched is not the edit's, whatever a slope extrapolates to.
    share = hits / np.maximum(total, 1e-9)
    rule *= np.clip((share - _SHARE_LOW) / (_SHARE_HIGH - _SHARE_LOW), 0.0, 1.0)
    overall = float(edited.mean()) if len(edited) else 0.0
    prior = np.clip((overall - _GLOBAL_SHARE) / (1.0 - _GLOBAL_SHARE), 0.0, 1.0)
    trust = (total * rule + _TRUST_PRIOR * prior) / (total + _TRUST_PRIOR)
    return trust.ravel()


def _box3(cube: np.ndarray) -> np.ndarray:
    """Sum over each node's 3×3×3 neighbourhood, so noise moving a colour by a bin still
    finds its evidence."""
    padded = np.pad(cube, 1)
    for axis in range(3):
        n = cube.shape[axis]
        padded = sum(np.take(padded, range(o, o + n), axis=axis) for o in range(3))
        padded = np.pad(padded, [(1, 1) if a == axis else (0, 0) for a in range(3)])
    return padded[1:-1, 1:-1, 1:-1]


def _bake(theta: np.ndarray, support: np.ndarray, n: int, trust: np.ndarray,
          fine: int) -> ColourLut:
    """Evaluate the blend of the nodes' affine models on a fine grid, for remap lookup, next
    to each colour's trust.

    The blend is normalised by the nodes' support, so a corner node that few pixels reached
    does not drag a well-observed colour's value towards 0.
    """
    axis = np.linspace(0.0, 1.0, fine)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    colours = np.stack([r.ravel(), g.ravel(), b.ravel()], -1)  # fine index = r + f·g + f²·b
    hstep = 1.0 / (n - 1)
    grid_r = np.arange(n**3) % n
    grid_g = (np.arange(n**3) // n) % n
    grid_b = np.arange(n**3) // (n * n)
    node_pos = np.stack([grid_r, grid_g, grid_b], -1) * hstep
    value = np.zeros((len(colours), 4))
    norm = np.zeros(len(colours))
    for idx, wt in _corners(colours, n):
        x = (colours - node_pos[idx]) / hstep
        local = theta[idx, 0, :] + np.einsum("pi,pio->po", x, theta[idx, 1:, :])
        wt = wt * support[idx]
        value += wt[:, None] * local
        norm += wt
    value /= np.maximum(norm, 0.005)[:, None]  # colours no keyframe pixel came near fade out
    cube = np.concatenate([value, trust[:, None]], -1).reshape(fine, fine, fine, 5)  # (b, g, r)
    table = cube.transpose(1, 0, 2, 3).reshape(fine, fine * fine, 5)  # row g, col r + f·b
    return ColourLut(np.ascontiguousarray(table, dtype=np.float32), fine)
