"""`chroma`: a green- / blue-screen keyer that knows what the screen looked like behind the subject.

Real screens are not one colour: they fall off towards the corners and carry folds, blotches and
the subject's shadow. A key against one global screen colour either eats into the subject or
leaves the dark corners grey, so the keyer first builds a *clean plate*, the screen as lit, per
pixel: cells of the frame that are confidently screen (strongly key-coloured, and not next to
anything that is not) are averaged on a coarse grid, and the gaps behind the subject are filled
smoothly from around them (push-pull interpolation). A second pass repeats this against the first
estimate instead of one global reference, so dark corners and shadows count as screen too. The
grid is pooled over neighbouring frames (``temporal``) where their cells agree in colour: a
still screen steadies, a moving shadow is not smeared.

Then, per pixel, with ``D(c) = c_key - max(other two channels)``:

1. a first matte, the colour-difference key ``1 - D(source) / D(screen here)`` (D pre-blurred
   by a pixel against grain: it decides what is subject, the edge solve measures). It finds the
   subject robustly (every colour that is not greener, resp. bluer, than it is red or blue is
   opaque: yellows and cyans too) but assumes the subject has no key colour at all, while most
   subjects have less than none (a red shirt), so it turns opaque while an edge is still partly
   screen: a hard, fringed edge;
2. near the edge (up to ``edge`` px inside the first matte's soft band, by how wide that band
   is, and a pixel outside) each pixel is solved as a mix of the local screen and the local
   subject colour (the solid subject just inside, spread outwards), which is exact for any mix
   of the two, with the subject's brightness free within a prior so shading does not read as
   transparency, and normalised so that a solid pixel by the edge stays solid. Motion-blurred
   and fine edges come out with the coverage they have; nothing is thresholded to a binary
   matte;
3. ``clip_black`` / ``clip_white`` clean the screen to 0 and the subject to 1 ("auto" black:
   the first-matte level that 99.7 % of the confidently-screen pixels stay under, so grain and
   folds finer than the plate grid key out; at the edge, 3 noise deviations of the solve), then
   an optional ``choke`` and ``blur``;
4. foreground: the source, bit for bit, where alpha is 1, and elsewhere the source *unmixed*
   from the local screen, ``F = screen + (source - screen) / alpha``, so the old screen does not
   bleed into the edge; then despill: what is greener (bluer) than ``despill_tolerance`` above
   the larger other channel cannot be the subject's own colour and is brought down to it. A pixel
   with less key than that, which is every colour but the screen's own, is left as it is;
5. background: the clean plate, for the compositor to unmix anything it changes itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from studio_nova.errors import EditRequestError
from studio_nova.plugin_api.mattes import Matte, MatteContext

from ._params import check_names, flag, number

NAME = "chroma"
_PARAMS = (
    "screen", "clip_black", "clip_white", "despill", "despill_tolerance", "choke", "blur",
    "temporal", "edge",
)  # fmt: skip
_SCREEN_NAMES = {"green": 1, "blue": 2}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
_SCREEN_FORMS = "'green', 'blue', 'auto', a '#rrggbb' sample or [r, g, b] in [0, 1]"

# The clean-plate grid has about this many cells across the longer side, whatever the size.
_GRID_CELLS = 320
_MIN_CELL = 2
# A pixel is screen-like when its key difference is at least this share of the reference
# screen's (first pass, global) and of the local screen's (second pass) ...
_GLOBAL_SHARE = 0.35
_LOCAL_SHARE = 0.75
_LOCAL_PASSES = 1
_FLOOR = 0.25
# ... and its key channel exceeds the others by this share of itself (a dark grey is not screen).
_SATURATION = 0.2
# Default edge reach, as a share of the shorter side: how far inside the first matte's soft band
# the edge is re-measured (the colour-difference key saturates early on a wide blur).
_EDGE_SHARE = 0.02
# A frame whose clean-plate survey finds fewer screen cells than this has no screen in view.
_MIN_SCREEN_CELLS = 4
# Colour distance between subject and screen below which an edge solve means nothing.
_MIN_CONTRAST = 0.08
# Largest despill tolerance in the soft edge (unmixed colours; the interior's clears the grain).
_EDGE_TOLERANCE = 0.03
# Weight of "the subject's brightness at the edge is what it is nearby" in the edge solve.
_BRIGHTNESS_PRIOR = 1.0
# First-matte level that counts as subject when deciding where the edge is (screen noise that
# gets past clip_black stays well below it; a hair strand does not).
_SUBJECT = 0.25
# Pre-blur (Gaussian sigma, px) of the key difference for the first matte, against grain.
_PRE_BLUR = 1.0


@dataclass(frozen=True)
class ChromaSettings:
    """The validated params of one `chroma` request (recorded in `Matte.info`)."""

    screen: str | tuple[float, float, float] = "green"
    clip_black: float | None = None  # None: auto, from the noise
    clip_white: float = 0.95
    despill: bool = True
    despill_tolerance: float | None = None  # None: auto, from the noise
    choke: float = 0.0
    blur: float = 0.0
    temporal: int = 2
    edge: float | None = None  # px; None: auto, 2 % of the shorter side; 0: no refinement


def parse_params(params: dict[str, Any]) -> ChromaSettings:
    """Validate a request's `matte.params`; every problem names the param and its value."""
    check_names(NAME, params, _PARAMS)
    clip_black = params.get("clip_black", "auto")
    if clip_black != "auto":
        clip_black = number(NAME, "clip_black", clip_black, low=0.0, high=0.9)
    clip_white = number(NAME, "clip_white", params.get("clip_white", 0.95), low=0.1, high=1.0)
    if clip_black != "auto" and clip_white <= clip_black + 0.05:
        raise EditRequestError(
            f"matte source {NAME!r}: clip_white ({clip_white}) must exceed clip_black "
            f"({clip_black}) by more than 0.05"
        )
    tolerance = params.get("despill_tolerance", "auto")
    if tolerance != "auto":
        tolerance = number(NAME, "despill_tolerance", tolerance, low=0.0, high=1.0)
    edge = params.get("edge", "auto")
    if edge != "auto":
        edge = number(NAME, "edge", edge, low=0.0, high=200.0)
    return ChromaSettings(
        screen=_parse_screen(params.get("screen", "green")),
        clip_black=None if clip_black == "auto" else float(clip_black),
        clip_white=float(clip_white),
        despill=flag(NAME, "despill", params.get("despill", True)),
        despill_tolerance=None if tolerance == "auto" else float(tolerance),
        choke=float(number(NAME, "choke", params.get("choke", 0.0), low=-20.0, high=20.0)),
        blur=float(number(NAME, "blur", params.get("blur", 0.0), low=0.0, high=20.0)),
        temporal=int(number(NAME, "temporal", params.get("temporal", 2), low=0, high=12, integer=True)),
        edge=None if edge == "auto" else float(edge),
    )


def _parse_screen(screen: Any) -> str | tuple[float, float, float]:
    if isinstance(screen, str):
        match = _HEX.match(screen)
        if match is None:
            if screen not in (*_SCREEN_NAMES, "auto"):
                raise EditRequestError(f"matte source {NAME!r}: screen must be {_SCREEN_FORMS}, got {screen!r}")
            return screen
        digits = match.group(1)
        screen = [int(digits[i : i + 2], 16) / 255.0 for i in (0, 2, 4)]
    if not isinstance(screen, (list, tuple)) or len(screen) != 3:
        raise EditRequestError(f"matte source {NAME!r}: screen must be {_SCREEN_FORMS}, got {screen!r}")
    rgb = tuple(float(number(NAME, f"screen[{i}]", v, low=0.0, high=1.0)) for i, v in enumerate(screen))
    ordered = sorted(rgb)
    if ordered[2] - ordered[1] < 0.1:
        raise EditRequestError(
            f"matte source {NAME!r}: screen {list(rgb)} is not a keyable screen colour: its "
            f"largest channel must exceed the others by at least 0.1"
        )
    return rgb  # type: ignore[return-value]


class ChromaKeyMatte:
    """Green / blue screen keyer: clean-plate screen estimate, soft unmixed edges, despill."""

    name: ClassVar[str] = NAME

    def __init__(self, **params: Any) -> None:
        self.settings = parse_params(params)
        self.context_frames = self.settings.temporal  # its clean plate pools this many frames each side

    def mattes(self, context: MatteContext) -> Matte:
        alpha, background, foreground, info = key(context.frames, self.settings)
        info["source"] = NAME
        return Matte(alpha=alpha, background=background, foreground=foreground, info=info)


# --- the keyer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Channel roles and the sizes everything works at, for one run of frames."""

    key: int  # the key channel: 1 green, 2 blue
    others: tuple[int, int]
    width: int
    height: int
    cell: int  # px per clean-plate grid cell
    grid: tuple[int, int]  # (columns, rows) of the grid
    survey: int  # the screen survey runs at 1/survey of the frame size
    edge: int  # px


def key(frames: np.ndarray, settings: ChromaSettings = ChromaSettings()
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(alpha, screen, foreground, info) of a run of frames (N, H, W, 3) uint8 / uint16 / float32."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be (N, H, W, 3) with N >= 1, got {frames.shape}")
    if frames.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"frames must be uint8, uint16 or float32, got {frames.dtype}")
    n, h, w = frames.shape[:3]
    scale = np.float32(1.0 / {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(frames.dtype, 1.0))

    # 1. Layout: which channel keys, the clean-plate grid, the survey size, the edge reach.
    channel = _key_channel(settings.screen, frames, scale)
    cell = max(_MIN_CELL, round(max(h, w) / _GRID_CELLS))
    edge = settings.edge if settings.edge is not None else _EDGE_SHARE * min(h, w)
    layout = _Layout(
        key=channel,
        others=tuple(c for c in range(3) if c != channel),  # type: ignore[arg-type]
        width=w,
        height=h,
        cell=cell,
        grid=(max(1, math.ceil(w / cell)), max(1, math.ceil(h / cell))),
        survey=2 if cell % 2 == 0 and min(h, w) >= 480 else 1,
        edge=round(edge) if edge <= 0 else max(2, round(edge)),
    )
    reference = _reference_difference(frames, layout, settings.screen, scale)

    # 2. Screen survey: per frame, the coarse colour of each cell and whether it is all screen.
    cells = np.empty((n, layout.grid[1], layout.grid[0], 3), np.float32)
    confident = np.empty((n, layout.grid[1], layout.grid[0]), np.float32)
    for t in range(n):
        cells[t], confident[t] = _survey(frames[t], layout, reference, scale)
    noise, screen_level = _noise(frames, cells, confident, layout, scale)
    clip_black, tolerance = _auto_levels(settings, noise, screen_level)

    # 3. Per frame: clean plate, first matte, edge refinement, foreground.
    alpha_out = np.empty((n, h, w), np.float32)
    screen_out = np.empty((n, h, w, 3), np.float32)
    fore_out = np.empty((n, h, w, 3), np.float32)
    no_screen = []
    for t in range(n):
        pooled, seen = _pool(cells, confident, t, settings.temporal, noise)
        np.multiply(frames[t], scale, out=fore_out[t], casting="unsafe")
        if seen.sum() < _MIN_SCREEN_CELLS:
            # Nothing here is screen (a close-up that fills the frame): all subject, untouched.
            no_screen.append(t)
            alpha_out[t] = 1.0
            screen_out[t] = fore_out[t]
            continue
        plate_cells = _fill(pooled, seen)
        cv2.resize(plate_cells, (w, h), dst=screen_out[t], interpolation=cv2.INTER_LINEAR)
        _matte_frame(fore_out[t], screen_out[t], plate_cells, alpha_out[t], layout, settings,
                     reference, noise, clip_black, tolerance)
    info = {
        "settings": asdict(settings),
        "key_channel": "rgb"[channel],
        "screen_difference": round(float(reference), 4),
        "noise": round(float(noise), 5),
        "screen_level": round(float(screen_level), 4),
        "clip_black": round(float(clip_black), 4),
        "despill_tolerance": round(float(tolerance), 4) if settings.despill else None,
        "grid_cell": cell,
        "edge": layout.edge,
    }
    if no_screen:
        frames_text = ", ".join(str(t) for t in no_screen[:10]) + (" ..." if len(no_screen) > 10 else "")
        info["warning"] = f"no screen found in {len(no_screen)} of {n} frames (offsets {frames_text}): kept opaque"
    return alpha_out, screen_out, fore_out, info


def _matte_frame(image: np.ndarray, plate: np.ndarray, plate_cells: np.ndarray, alpha: np.ndarray,
                 layout: _Layout, settings: ChromaSettings, reference: float, noise: float,
                 clip_black: float, tolerance: float) -> None:
    """Alpha of one frame into `alpha`, and its foreground over `image` (in place)."""
    h, w = alpha.shape
    diff = _pre_blur(_difference(image, layout))
    plate_diff = _difference(plate_cells, layout)
    np.maximum(plate_diff, np.float32(0.1 * reference), out=plate_diff)
    local = cv2.resize(plate_diff, (w, h), interpolation=cv2.INTER_LINEAR)
    # First matte: the colour-difference key against the local screen.
    span = np.float32(settings.clip_white - clip_black)
    cv2.divide(diff, local, dst=diff)
    np.subtract(np.float32(1.0 - clip_black), diff, out=alpha)
    np.multiply(alpha, np.float32(1.0) / span, out=alpha)
    np.clip(alpha, 0.0, 1.0, out=alpha)

    # Everything else happens near the subject only (not near a speck of screen noise).
    margin = layout.edge + 2 * layout.cell + math.ceil(abs(settings.choke) + 3 * settings.blur) + 2
    box = _bounding_box(alpha > _SUBJECT, margin)
    if box is None:
        return
    crop = (slice(box[0], box[1]), slice(box[2], box[3]))
    a, c, s = alpha[crop], image[crop], plate[crop]
    subject = None
    if layout.edge > 0:
        a[:], subject = _refine(a, c, s, layout, noise, settings.clip_white)
    if settings.choke or settings.blur:
        a[:] = _choke_blur(a, settings.choke, settings.blur)
    _foreground(c, s, a, subject, layout, tolerance if settings.despill else None)


def _pool(cells: np.ndarray, confident: np.ndarray, t: int, radius: int, noise: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """Frame `t`'s screen cells, averaged with the same cells of neighbouring frames.

    A neighbour counts where it saw screen, and where frame `t` saw screen too only if its
    colour there is the same up to the noise: a moving shadow or a light change is not
    averaged away, while a still screen gets steadier and shows more of itself behind a
    moving subject.
    """
    if radius <= 0:
        return cells[t], confident[t]
    lo, hi = max(0, t - radius), min(len(cells), t + radius + 1)
    spread = np.float32(max(3.0 * noise, 0.01) ** 2)
    change = np.sum((cells[lo:hi] - cells[t]) ** 2, axis=-1)
    same = np.where(confident[t] > 0, np.exp(-change / spread), np.float32(1.0))
    weights = confident[lo:hi] * same
    seen = weights.sum(axis=0)
    mean = (cells[lo:hi] * weights[..., None]).sum(axis=0) / np.maximum(seen, 1e-6)[..., None]
    return mean.astype(np.float32), np.minimum(seen, 1.0).astype(np.float32)


def _key_channel(screen: str | tuple[float, float, float], frames: np.ndarray, scale: np.float32) -> int:
    if isinstance(screen, tuple):
        return int(np.argmax(screen))
    if screen != "auto":
        return _SCREEN_NAMES[screen]
    # The screen is whichever of green / blue clearly dominates more pixels.
    sample = frames[:: max(1, len(frames) // 4), ::4, ::4].astype(np.float32) * scale
    r, g, b = sample[..., 0], sample[..., 1], sample[..., 2]
    green = float(np.mean(g - np.maximum(r, b) > 0.1))
    blue = float(np.mean(b - np.maximum(r, g) > 0.1))
    return 1 if green >= blue else 2


def _difference(image: np.ndarray, layout: _Layout) -> np.ndarray:
    """D = key channel minus the larger of the other two, (H, W) float32."""
    o1, o2 = layout.others
    return (image[..., layout.key] - np.maximum(image[..., o1], image[..., o2])).astype(np.float32)


def _reference_difference(frames: np.ndarray, layout: _Layout,
                          screen: str | tuple[float, float, float], scale: np.float32) -> float:
    """The key difference of a typical, well-lit screen pixel of this run of frames."""
    if isinstance(screen, tuple):
        sample = np.asarray(screen, np.float32)
        return float(max(_difference(sample[None, None], layout)[0, 0], 0.05))
    step = max(1, len(frames) // 4)
    stride = max(1, min(frames.shape[1:3]) // 180)
    sample = frames[::step, ::stride, ::stride].astype(np.float32) * scale
    diff = _difference(sample, layout)
    top = float(np.percentile(diff, 98))
    if top <= 0.05:
        return 0.05  # no screen in these frames
    return float(np.median(diff[diff > 0.5 * top]))


def _survey(frame: np.ndarray, layout: _Layout, reference: float, scale: np.float32
            ) -> tuple[np.ndarray, np.ndarray]:
    """(cell colours, cells that are all screen) of one frame, at the survey resolution."""
    if layout.survey > 1:
        size = (layout.width // layout.survey, layout.height // layout.survey)
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    image = frame.astype(np.float32) * scale
    diff = _pre_blur(_difference(image, layout))  # grain must not break up the screen
    saturated = diff > _SATURATION * _pre_blur(image[..., layout.key])
    cells = cv2.resize(image, layout.grid, interpolation=cv2.INTER_AREA)
    confident = _all_screen(saturated & (diff > _GLOBAL_SHARE * reference), layout.grid)
    for _ in range(_LOCAL_PASSES):
        plate = _fill(cells, confident)
        local = np.maximum(_difference(plate, layout), np.float32(_FLOOR * reference))
        local = cv2.resize(local, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        confident = _all_screen(saturated & (diff > _LOCAL_SHARE * local), layout.grid)
    return cells, confident


def _all_screen(screen_like: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Grid cells whose every pixel is screen-like, less a one-cell border around the rest."""
    share = cv2.resize(screen_like.astype(np.float32), grid, interpolation=cv2.INTER_AREA)
    solid = (share > 0.999).astype(np.uint8)
    solid = cv2.erode(solid, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return solid.astype(np.float32)


def _noise(frames: np.ndarray, cells: np.ndarray, confident: np.ndarray, layout: _Layout,
           scale: np.float32) -> tuple[float, float]:
    """How far the screen strays from its clean plate: (noise, screen level).

    `noise` is the robust std of D around the clean plate's D (the grain, also where
    compression and demosaicing spread it over neighbours). `screen level` is the first
    matte that 99.7 % of the confidently-screen pixels stay under: it also covers what is
    not grain, such as folds finer than the plate grid. From up to three frames.
    """
    raw, smooth = [], []
    for t in np.linspace(0, len(frames) - 1, min(3, len(frames))).astype(int):
        mask = cv2.resize(confident[t], (layout.width, layout.height), interpolation=cv2.INTER_NEAREST) > 0
        if mask.sum() < 256:
            continue
        plate = _fill(cells[t], confident[t])
        local = cv2.resize(_difference(plate, layout), (layout.width, layout.height),
                           interpolation=cv2.INTER_LINEAR)
        diff = _difference(frames[t].astype(np.float32) * scale, layout)
        sample = (slice(None, None, 2), slice(None, None, 2))  # a sample is plenty
        residual = (diff - local)[sample][mask[sample]]
        raw.append(1.4826 * float(np.median(np.abs(residual - np.median(residual)))))
        first_matte = 1.0 - _pre_blur(diff)[sample][mask[sample]] / np.maximum(local[sample][mask[sample]], 1e-3)
        smooth.append(float(np.percentile(first_matte, 99.7)))
    if not raw:
        return 0.0, 0.0
    return float(np.median(raw)), float(np.median(smooth))


def _pre_blur(diff: np.ndarray) -> np.ndarray:
    """The key difference with the grain taken down, for deciding what is subject."""
    return cv2.GaussianBlur(diff, (0, 0), _PRE_BLUR)


def _auto_levels(settings: ChromaSettings, noise: float, screen_level: float) -> tuple[float, float]:
    """(clip_black, despill_tolerance): the settings, or what the screen's own spread asks for."""
    clip_black = settings.clip_black
    if clip_black is None:
        clip_black = float(np.clip(screen_level + 0.01, 0.01, 0.3))
    tolerance = settings.despill_tolerance
    if tolerance is None:
        tolerance = float(np.clip(4.0 * noise, 0.01, 0.15))
    return clip_black, tolerance


def _fill(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Push-pull: `values` (h, w, c) where `weights` (0..1) are high, smoothly filled elsewhere."""
    channels = values.shape[-1]

    def shaped(array: np.ndarray) -> np.ndarray:  # OpenCV drops a single channel axis
        return array.reshape(array.shape[0], array.shape[1], channels)

    levels = [(values * weights[..., None], weights)]
    while min(levels[-1][1].shape[:2]) > 2:
        v, wt = levels[-1]
        levels.append((shaped(cv2.pyrDown(v)), cv2.pyrDown(wt)))
    v, wt = levels[-1]
    total = float(wt.sum())
    if total <= 1e-6:
        mean = values.reshape(-1, channels).mean(axis=0)
        return np.broadcast_to(mean.astype(np.float32), values.shape).copy()
    filled = np.broadcast_to((v.sum(axis=(0, 1)) / total).astype(np.float32), v.shape).copy()
    for v, wt in reversed(levels):
        up = shaped(cv2.resize(filled, (wt.shape[1], wt.shape[0]), interpolation=cv2.INTER_LINEAR))
        trust = np.clip(wt * 2.0, 0.0, 1.0)[..., None]
        filled = trust * (v / np.maximum(wt, 1e-6)[..., None]) + (1.0 - trust) * up
    return shaped(cv2.GaussianBlur(filled, (0, 0), 1.0))


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (max(0, rows[0] - margin), min(h, rows[-1] + margin + 1),
            max(0, cols[0] - margin), min(w, cols[-1] + margin + 1))


def _refine(alpha: np.ndarray, image: np.ndarray, plate: np.ndarray, layout: _Layout,
            noise: float, clip_white: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(alpha, local subject colour): the alpha near the edge, solved against the subject.

    The first matte's soft band is widened inwards by about 1.5 times its own width (up to
    `layout.edge` px: the colour-difference key saturates early on a wide motion blur) and by
    one pixel outwards. There, each pixel C is explained as a mix of the local screen S and
    the local subject colour F at some brightness: C = nu S + mu F, solved by least squares
    with mu held near 1 - nu (so it is the exact mix line when the subject's colour is right,
    and a darker or brighter patch of the subject does not read as transparency). F is the
    mean colour of the solid subject nearby (first matte 1 and beyond the widened band),
    spread outwards. The coverage 1 - nu is then divided by the smallest coverage that the
    solid pixels next to the band get in the same way, so none of them turns translucent,
    and clipped like the first matte at ~3 noise deviations. Where F is too close to the
    screen colour for this to mean anything, the first matte stays.
    """
    h, w = alpha.shape
    reach, cell = layout.edge, layout.cell
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1, 2 * reach + 1))
    soft = (alpha < 1.0).astype(np.uint8)
    band = (alpha > 0.0) & (alpha < 1.0)
    inward = cv2.distanceTransform(soft ^ 1, cv2.DIST_L2, 3)  # px inside the soft band
    to_screen = cv2.distanceTransform((alpha > 0.0).astype(np.uint8), cv2.DIST_L2, 3)
    to_solid = cv2.distanceTransform(soft, cv2.DIST_L2, 3)
    width = cv2.dilate(np.where(band, to_screen + to_solid, np.float32(0.0)), square)
    widened = inward <= np.clip(1.5 * width, 2.0, float(reach))
    touching = cv2.dilate((alpha > 0.0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    near_subject = cv2.dilate((alpha > _SUBJECT).astype(np.uint8), square) > 0
    zone = widened & touching & near_subject
    core = ~widened
    if not core.any() or not zone.any():
        return alpha, None

    # The local subject colour: solid pixels' mean per grid cell, spread outwards.
    grid = (max(1, w // cell), max(1, h // cell))
    solid = core.astype(np.float32)
    share = cv2.resize(solid, grid, interpolation=cv2.INTER_AREA)
    colour = cv2.resize(image * solid[..., None], grid, interpolation=cv2.INTER_AREA)
    colour /= np.maximum(share, 1e-6)[..., None]
    subject = cv2.resize(_fill(colour, (share > 0.2).astype(np.float32)), (w, h),
                         interpolation=cv2.INTER_LINEAR)

    # Coverages where they are needed: the zone, and the solid pixels next to it.
    ring = core & (cv2.dilate(zone.astype(np.uint8), square) > 0)
    where = np.nonzero(zone | ring)
    in_ring = ring[where]
    c, s, f = image[where], plate[where], subject[where]
    coverage = _coverage(c, s, f)
    contrast = f - s
    length = np.sqrt(np.einsum("ij,ij->i", contrast, contrast))
    # The smallest coverage of solid pixels nearby: dividing by it keeps them solid.
    solid_coverage = np.full((h, w), 4.0, np.float32)
    solid_coverage[where[0][in_ring], where[1][in_ring]] = coverage[in_ring]
    pooled = cv2.erode(solid_coverage, np.ones((cell, cell), np.uint8))
    low = cv2.erode(cv2.resize(pooled, grid, interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
    valid = (low < 3.9).astype(np.float32)
    envelope = _fill(np.where(valid > 0, low, np.float32(1.0))[..., None], valid)[..., 0]
    envelope = np.clip(cv2.resize(envelope, (w, h), interpolation=cv2.INTER_LINEAR), 0.5, 1.0)

    in_zone = ~in_ring
    zy, zx = where[0][in_zone], where[1][in_zone]
    solved = coverage[in_zone] / envelope[zy, zx]
    trust = np.clip((length[in_zone] - _MIN_CONTRAST) / _MIN_CONTRAST, 0.0, 1.0)
    raw = trust * solved + (1.0 - trust) * alpha[zy, zx]
    black = np.clip(3.0 * noise / np.maximum(length[in_zone], 1e-3), 0.01, 0.3)
    white = np.minimum(np.float32(clip_white), 1.0 - black)
    out = alpha.copy()
    out[zy, zx] = np.clip((raw - black) / (white - black), 0.0, 1.0)
    return out, subject


def _coverage(colour: np.ndarray, screen: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """1 - nu, with colour ~ nu * screen + mu * subject and mu held near 1 - nu (per row).

    Least squares of the two-colour model plus `_BRIGHTNESS_PRIOR` * (mu + nu - 1)^2: the
    prior makes it the plain projection onto the screen-subject line when the subject's
    brightness is right, and lets a darker or brighter subject patch through when it is not.
    """
    subject = np.maximum(subject, np.float32(0.01))  # black has no direction: a dark grey
    prior = np.float32(_BRIGHTNESS_PRIOR)
    ff = np.einsum("ij,ij->i", subject, subject) + prior
    ss = np.einsum("ij,ij->i", screen, screen) + prior
    fs = np.einsum("ij,ij->i", subject, screen) + prior
    fc = np.einsum("ij,ij->i", subject, colour) + prior
    sc = np.einsum("ij,ij->i", screen, colour) + prior
    nu = (ff * sc - fs * fc) / np.maximum(ff * ss - fs * fs, 1e-9)
    return (1.0 - nu).astype(np.float32)


def _choke_blur(alpha: np.ndarray, choke: float, blur: float) -> np.ndarray:
    if choke:
        size = math.ceil(abs(choke)) * 2 + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        alpha = cv2.erode(alpha, kernel) if choke > 0 else cv2.dilate(alpha, kernel)
    if blur:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    return alpha


def _foreground(image: np.ndarray, plate: np.ndarray, alpha: np.ndarray,
                subject: np.ndarray | None, layout: _Layout, tolerance: float | None) -> None:
    """The subject's colour, in place over `image`: unmixed from the screen, despilled.

    Everywhere: the key channel is held to `tolerance` above the larger other channel (no
    subject colour is greener than that; the screen's own is). At the edge, where spill is
    strongest, also to the local subject's own key level at this pixel's brightness, so a
    green-tinged rim of a skin-toned face goes back to skin instead of to yellow.
    """
    k, (o1, o2) = layout.key, layout.others
    edge = np.nonzero((alpha > 0.0) & (alpha < 1.0))
    if edge[0].size:
        a = np.maximum(alpha[edge], np.float32(1e-3))[:, None]
        s = plate[edge]
        fore = np.clip(s + (image[edge] - s) / a, 0.0, 1.0)
        if tolerance is not None:
            # Unmixed edge colours are not the source anyway: hold them tighter than the
            # interior, whose tolerance has to clear the grain.
            edge_tolerance = np.float32(min(tolerance, _EDGE_TOLERANCE))
            level = np.maximum(fore[:, o1], fore[:, o2])
            if subject is not None:
                local = subject[edge]
                brightness = (fore[:, o1] + fore[:, o2] + 0.02) / (local[:, o1] + local[:, o2] + 0.02)
                level = np.maximum(local[:, k] * brightness, level)
            np.minimum(fore[:, k], level + edge_tolerance, out=fore[:, k])
        image[edge] = fore
    if tolerance is not None:
        limit = np.maximum(image[..., o1], image[..., o2])
        limit += np.float32(tolerance)
        np.minimum(image[..., k], limit, out=image[..., k])
