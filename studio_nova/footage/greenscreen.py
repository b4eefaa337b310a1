"""Synthetic green- (or blue-) screen shots with a known ground truth, for background replacement.

A keyer cannot be judged on real footage without a hand-pulled reference matte; a drawn shot
knows its own answer. `make_greenscreen` films a textured figure (shirt with cyan-ish stripes,
yellow sleeves, skin, hair; optionally fine hair strands) that moves across the frame and
deforms (a travelling sine warp of the body, swinging arms whose length changes), with motion
blur (the figure is drawn at several instants inside the shutter and averaged), in front of a
screen lit the way real screens are: an illumination gradient, vignetting, wrinkle-like folds and
blotches, a soft shadow cast by the figure and moving with it. Screen colour bounces onto the
figure near its edges (spill), and sensor noise covers the whole frame.

A second, unrelated *plate* (a textured town-and-sky backdrop that pans by `plate_shift` px per
frame, with a balloon that moves on its own) is the new background, and `truth` is what a perfect
background replacement of the source over that plate gives (see `GreenScreenShot`).

Everything is float32 RGB in [0, 1]. The figure's colours are chosen so that no part of it is
greener (bluer, on a blue screen) than its other channels: what is, is spill.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from studio_nova.footage.synthetic import value_noise
from studio_nova.media.encode import VideoWriter
from studio_nova.media.frames import from_float

SCREENS = {
    "green": (0.22, 0.60, 0.30),
    "blue": (0.13, 0.25, 0.62),
}
KEY_CHANNEL = {"green": 1, "blue": 2}

# Figure palette (before texture shading, which multiplies by at most 1.2): each keeps the key
# channel below the largest other one, so despill has nothing to take from the true colours.
# The shirt mixes with the cyan accent (stripes, motion blur) without ever turning greener
# (bluer) than it is red or blue (green): both keep the same one of the other channels on top.
_SHIRT = {"green": (0.72, 0.20, 0.30), "blue": (0.74, 0.31, 0.15)}
_ACCENT = {"green": (0.10, 0.52, 0.56), "blue": (0.10, 0.56, 0.52)}  # cyan-ish, near the key
_SLEEVE = (0.78, 0.69, 0.18)  # yellow: green close to red
_SKIN = (0.80, 0.58, 0.46)
_HAIR = (0.30, 0.19, 0.12)
_STRAND = (0.62, 0.47, 0.30)  # fine strands: light brown, partly transparent everywhere


@dataclass
class GreenScreenShot:
    """A synthetic screen shot and everything true about it (arrays are float32 in [0, 1]).

    How the arrays relate, per frame and pixel (`n` the sensor noise, `clip` to [0, 1]):

    - ``source = clip(alpha * (foreground + spill_colour) + (1 - alpha) * screen + n)``: what
      the camera saw. ``spill_colour`` is ``spill`` (N, H, W) added to the key channel only (the
      screen's light bouncing onto the figure near its edges).
    - ``alpha`` is the figure's true coverage after motion blur (the mean of the coverages of
      the instants inside the shutter); ``foreground`` is its true colour (noise- and
      spill-free, unpremultiplied: the coverage-weighted mean colour of those instants; where
      the figure never reaches it is a plain figure colour, so it is defined everywhere).
    - ``screen`` is the clean screen as lit in that frame (shadow included): what is behind.
    - ``truth = alpha * clip(foreground + n) + (1 - alpha) * plate``: the ideal replacement.
      The figure keeps its own sensor noise (it is the same camera) but sheds the spill; the
      screen and its noise are gone. Where the figure is solid and spill-free (`interior`) the
      truth equals the source exactly.
    - ``plate`` frame ``t`` shows the plate canvas at offset ``t * plate_shift`` (x, y), i.e.
      its content moves by ``-plate_shift`` px per frame, plus a balloon that moves on its own.
    """

    source: np.ndarray  # (N, H, W, 3)
    alpha: np.ndarray  # (N, H, W)
    foreground: np.ndarray  # (N, H, W, 3)
    screen: np.ndarray  # (N, H, W, 3)
    spill: np.ndarray  # (N, H, W)
    noise: np.ndarray  # (N, H, W, 3)
    plate: np.ndarray  # (N, H, W, 3)
    plate_shift: tuple[float, float]  # px per frame (x, y)
    truth: np.ndarray  # (N, H, W, 3)
    screen_name: str = "green"
    fps: Fraction = Fraction(25)
    seed: int = 0
    info: dict[str, float] = field(default_factory=dict)

    @property
    def key_channel(self) -> int:
        return KEY_CHANNEL[self.screen_name]

    def truth_over(self, plate: np.ndarray) -> np.ndarray:
        """The ideal replacement over another plate (N, H, W, 3), with the same definition."""
        plate = np.asarray(plate, np.float32)
        if plate.shape != self.source.shape:
            raise ValueError(f"plate must have shape {self.source.shape}, got {plate.shape}")
        a = self.alpha[..., None]
        subject = np.clip(self.foreground + self.noise, 0.0, 1.0)
        return (a * subject + (1.0 - a) * plate).astype(np.float32)

    def interior(self, erode: int = 0) -> np.ndarray:
        """(N, H, W) bool: fully covered, spill-free pixels (truth == source), eroded `erode` px."""
        inside = (self.alpha >= 1.0) & (self.spill <= 0.0)
        if erode <= 0:
            return inside
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
        return np.stack([cv2.erode(m.astype(np.uint8), kernel) > 0 for m in inside])

    def frames(self, dtype: np.dtype | type = np.uint16) -> np.ndarray:
        """The source as integer frames (what `read_frames` would give for a lossless file)."""
        return from_float(self.source, dtype)

    # --- writers --------------------------------------------------------------------------

    def write_source(self, path: str | os.PathLike[str], codec: str = "prores_hq") -> Path:
        """The source as a camera original (ProRes 422 HQ by default, 10-bit)."""
        return _write_rgb(path, self.source, self.fps, codec)

    def write_plate(self, path: str | os.PathLike[str], codec: str = "prores_hq") -> Path:
        """The new background plate as a video file."""
        return _write_rgb(path, self.plate, self.fps, codec)

    def write_matte(self, path: str | os.PathLike[str], start: int = 0) -> Path:
        """The true alpha as a lossless grey matte, one matte frame per source frame.

        A video path (.mkv, .mov, .avi, .nut) gets FFV1 with R = G = B = alpha, 16-bit; a folder
        or a printf pattern (``mattes/m.%04d.png``) gets 16-bit grey PNGs numbered from `start`.
        """
        target = Path(path)
        if target.suffix.lower() in (".mkv", ".mov", ".avi", ".nut"):
            grey = np.repeat(self.alpha[..., None], 3, axis=-1)
            return _write_rgb(target, grey, self.fps, "ffv1")
        if "%" not in target.name:
            target.mkdir(parents=True, exist_ok=True)
            target = target / "matte.%04d.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        for number, frame in enumerate(from_float(self.alpha, np.uint16), start=start):
            name = target.parent / (target.name % number)
            if not cv2.imwrite(str(name), frame):
                raise OSError(f"could not write {name}")
        return target

    def write_with_alpha(self, path: str | os.PathLike[str], codec: str = "prores_4444") -> Path:
        """The figure alone with straight alpha: RGB = clip(foreground + n), A = alpha.

        What a compositing app renders for a keyed (or CG) element: ProRes 4444 with alpha by
        default, or lossless FFV1 RGBA (``codec="ffv1"``).
        """
        rgba = np.concatenate(
            [np.clip(self.foreground + self.noise, 0.0, 1.0), self.alpha[..., None]], axis=-1
        )
        target = Path(path)
        _n, h, w = self.alpha.shape
        with VideoWriter(
            target, width=w, height=h, rate=self.fps, codec=codec, input_dtype=np.uint16,
            alpha=True,
        ) as writer:
            for frame in rgba:
                writer.write(from_float(frame, np.uint16))
        return target


def make_greenscreen(
    n_frames: int,
    width: int,
    height: int,
    seed: int = 0,
    *,
    screen: str = "green",
    noise: float = 0.01,
    motion_blur: int = 6,
    shutter: float = 0.5,
    spill: float = 0.10,
    spill_width: float = 3.0,
    vignetting: float = 0.35,
    wrinkles: float = 0.06,
    shadow: float = 0.3,
    hair: bool = False,
    static: bool = False,
    plate_shift: tuple[float, float] = (2.5, 0.5),
    fps: Fraction | int = 25,
) -> GreenScreenShot:
    """Draw a screen shot of `n_frames` at `width`×`height`, deterministically per `seed`.

    `screen` "green" or "blue"; `noise` the sensor noise (standard deviation, per pixel and
    channel, fresh every frame); `motion_blur` instants per frame across a `shutter` of that
    fraction of a frame (1 instant: no blur); `spill` the key-channel light added to the figure
    at its edge, fading to nothing `spill_width` px inside; `vignetting` how much darker the
    corners are; `wrinkles` the amplitude of folds and blotches; `shadow` how dark the figure's
    soft shadow is; `hair` adds fine, partly transparent strands around the head; `static`
    holds the figure still (for flicker measurements; noise still changes every frame).
    """
    if screen not in SCREENS:
        raise ValueError(f"screen must be one of {', '.join(SCREENS)}, got {screen!r}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if width < 32 or height < 32:
        raise ValueError(f"width and height must be at least 32, got {width}x{height}")
    if motion_blur < 1:
        raise ValueError(f"motion_blur must be at least 1, got {motion_blur}")
    if not 0.0 <= shutter <= 1.0:
        raise ValueError(f"shutter must be in [0, 1], got {shutter}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    rng = np.random.default_rng(seed)
    n, h, w = n_frames, height, width
    figure = _Figure(rng, w, h, screen, hair, static)
    lit = _screen_light(rng, w, h, screen, vignetting, wrinkles)

    alpha = np.empty((n, h, w), np.float32)
    foreground = np.empty((n, h, w, 3), np.float32)
    for t in range(n):
        alpha[t], foreground[t] = figure.render(t, motion_blur, shutter)

    key = KEY_CHANNEL[screen]
    spill_map = np.zeros((n, h, w), np.float32)
    screens = np.empty((n, h, w, 3), np.float32)
    shadow_shift = np.float32([[1, 0, 0.08 * w], [0, 1, 0.04 * h]])
    for t in range(n):
        solid = (alpha[t] >= 0.999).astype(np.uint8)
        if spill > 0 and spill_width > 0:
            depth = cv2.distanceTransform(solid, cv2.DIST_L2, 3)
            ramp = np.clip(1.0 - depth / np.float32(spill_width), 0.0, 1.0)
            spill_map[t] = spill * ramp * ramp * (alpha[t] > 0)
        cast = cv2.warpAffine(alpha[t], shadow_shift, (w, h), borderMode=cv2.BORDER_CONSTANT)
        cast = cv2.GaussianBlur(cast, (0, 0), 0.035 * w)
        screens[t] = lit * (1.0 - shadow * cast)[..., None]

    sensor = rng.standard_normal((n, h, w, 3), dtype=np.float32) * np.float32(noise)
    seen = foreground.copy()
    seen[..., key] += spill_map
    a = alpha[..., None]
    source = np.clip(a * seen + (1.0 - a) * screens + sensor, 0.0, 1.0)

    plate, shift = _plate(rng, n, w, h, plate_shift)
    truth = a * np.clip(foreground + sensor, 0.0, 1.0) + (1.0 - a) * plate
    return GreenScreenShot(
        source=source.astype(np.float32),
        alpha=alpha,
        foreground=foreground,
        screen=screens,
        spill=spill_map,
        noise=sensor,
        plate=plate,
        plate_shift=shift,
        truth=truth.astype(np.float32),
        screen_name=screen,
        fps=Fraction(fps),
        seed=seed,
        info={"noise": noise, "motion_blur": motion_blur, "shutter": shutter, "spill": spill},
    )


# --- the figure ----------------------------------------------------------------------------


class _Figure:
    """A textured body in canonical units (height ≈ 1), posed and warped per instant."""

    def __init__(self, rng: np.random.Generator, w: int, h: int, screen: str, hair: bool,
                 static: bool) -> None:
        self.w, self.h, self.static = w, h, static
        self.scale = 0.72 * h  # px per canonical unit
        reach = 0.36 * self.scale  # half the figure's widest pose, in px
        self.amp_x = max(0.0, min(0.26 * w, w / 2 - reach - 0.04 * w))
        self.period = 30.0 + 6.0 * rng.random()
        self.phase = rng.uniform(0, 2 * math.pi, size=6)
        self.accent = np.float32(_ACCENT[screen])
        self.shirt = np.float32(_SHIRT[screen])
        size = 256
        self.texture = np.stack([_value_noise(rng, size, size, 4, 4) for _ in range(3)], axis=-1)
        self.tex_size = size
        self.strands = _strands(rng, 46) if hair else []

    def pose(self, tau: float) -> dict[str, float]:
        if self.static:
            tau = 0.0
        p = self.phase
        u = 2 * math.pi * tau / self.period
        return {
            "cx": self.w / 2 + self.amp_x * math.sin(u + p[0]),
            "cy": 0.53 * self.h + 0.035 * self.h * math.sin(1.7 * u + p[1]),
            "warp": 0.03 * math.sin(2.3 * u + p[2]),
            "wave": 2.0 * u + p[3],
            "left": math.pi / 2 + 0.75 + 0.55 * math.sin(2.6 * u + p[4]),
            "right": math.pi / 2 - 0.75 - 0.6 * math.sin(2.9 * u + p[5]),
            "stretch": 1.0 + 0.12 * math.sin(3.1 * u + p[4]),
            "sway": 0.5 * math.sin(3.7 * u + p[2]),
        }

    def render(self, t: int, samples: int, shutter: float) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, colour) of frame `t`: the mean over `samples` instants of the shutter."""
        h, w = self.h, self.w
        cover = np.zeros((h, w), np.float32)
        premul = np.zeros((h, w, 3), np.float32)
        fallback = np.zeros((h, w, 3), np.float32)
        for k in range(samples):
            tau = t + shutter * ((k + 0.5) / samples - 0.5)
            c, colour = self._instant(tau)
            cover += c
            premul += c[..., None] * colour
            fallback += colour
        alpha = cover / samples
        inked = alpha > 1e-6
        colour = np.where(inked[..., None], premul / np.maximum(cover, 1e-12)[..., None],
                          fallback / samples)
        alpha[~inked] = 0.0
        alpha[alpha > 1.0 - 1e-6] = 1.0
        return alpha, np.clip(colour, 0.0, 1.0).astype(np.float32)

    def _instant(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """Coverage and unpremultiplied colour of one instant (colour defined everywhere)."""
        pose = self.pose(tau)
        s = self.scale
        # Everything the figure can reach (arms out, strands up), in px: draw only there.
        x0 = max(0, int(pose["cx"] - 0.68 * s) - 2)
        x1 = min(self.w, int(pose["cx"] + 0.68 * s) + 3)
        y0 = max(0, int(pose["cy"] - 0.6 * s) - 2)
        y1 = min(self.h, int(pose["cy"] + 0.72 * s) + 3)
        full_cover = np.zeros((self.h, self.w), np.float32)
        full_colour = np.empty((self.h, self.w, 3), np.float32)
        full_colour[:] = self.shirt
        if x1 <= x0 or y1 <= y0:
            return full_cover, full_colour
        y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        py = (y - pose["cy"]) / s
        # Non-rigid: a sine wave travels down the body.
        px = (x - pose["cx"]) / s - pose["warp"] * np.sin(py * 9.0 + pose["wave"])
        px = px.astype(np.float32)
        py = py.astype(np.float32)

        cover = np.zeros(px.shape, np.float32)
        premul = np.zeros((*px.shape, 3), np.float32)
        plain = np.zeros((*px.shape, 3), np.float32)  # last paint: colour where nothing is

        def over(c: np.ndarray, paint: np.ndarray) -> None:
            premul[:] = c[..., None] * paint + (1.0 - c[..., None]) * premul
            cover[:] = c + (1.0 - c) * cover
            plain[:] = paint

        def edge(sdf_units: np.ndarray) -> np.ndarray:
            return np.clip(0.5 - sdf_units * s, 0.0, 1.0)  # 1 px antialiased edge

        # Back to front: strands, torso, head, arms, hands.
        if self.strands:
            over(*self._strands(px, py, pose))
        torso = _box_sdf(px, py - 0.18, 0.17, 0.27, 0.08)
        # Cyan-ish stripes on a panel down the middle of the shirt, out of the arms' reach, so
        # motion blur never mixes them with the sleeves or skin (cyan + yellow = green).
        panel = (0.5 + 0.5 * np.tanh(60.0 * (0.075 - np.abs(px)))) * (py > -0.02)
        stripes = panel * (0.5 + 0.5 * np.tanh(6.0 * np.sin(py * 40.0)))
        shirt = _mix(self.shirt, self.accent, stripes[..., None])
        over(edge(torso), shirt * self._shade(px, py, 0.0, 0.20))
        head = np.hypot(px, py + 0.28) - 0.13
        hair = (0.5 + 0.5 * np.tanh(40.0 * (-(py + 0.30) - 0.25 * px * px)))[..., None]
        face = _mix(np.float32(_SKIN) * self._shade(px, py, 1.0, 0.1),
                    np.float32(_HAIR) * self._shade(px, py, 2.0, 0.3), hair)
        over(edge(head), face)
        for side, angle in ((-1.0, pose["left"]), (1.0, pose["right"])):
            length = 0.36 * pose["stretch"]
            ax, ay = side * 0.14, -0.06
            bx, by = ax + length * math.cos(angle), ay + length * math.sin(angle)
            along, dist = _segment(px, py, ax, ay, bx, by)
            band = 1.0 - 0.3 * np.exp(-(((along - 0.6) / 0.06) ** 2))
            sleeve = np.float32(_SLEEVE) * band[..., None] * self._shade(along * 3, dist * 3, 3.0, 0.18)
            over(edge(dist - 0.05), sleeve)
            over(edge(np.hypot(px - bx, py - by) - 0.055), np.float32(_SKIN) * self._shade(px, py, 4.0, 0.1))
        inked = cover > 1e-6
        colour = np.where(inked[..., None], premul / np.maximum(cover, 1e-12)[..., None], plain)
        full_cover[y0:y1, x0:x1] = cover
        full_colour[y0:y1, x0:x1] = np.clip(colour, 0.0, 1.0)
        return full_cover, full_colour

    def _shade(self, u: np.ndarray, v: np.ndarray, offset: float, amount: float) -> np.ndarray:
        """Texture: the colour times 1 ± `amount`, from the noise image at (u, v)."""
        k = self.tex_size * 0.45
        mx = (u * k + self.tex_size * (0.5 + 0.13 * offset)) % (self.tex_size - 1)
        my = (v * k + self.tex_size * 0.5) % (self.tex_size - 1)
        tex = cv2.remap(self.texture, mx.astype(np.float32), my.astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        grain = tex[..., 0] + 0.35 * (tex[..., 1] - tex[..., 2])
        return (1.0 + amount * np.clip(grain, -1.0, 1.0))[..., None]

    def _strands(self, px: np.ndarray, py: np.ndarray, pose: dict[str, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Fine strands around the top of the head (well under a pixel to ~1.2 px wide)."""
        s = self.scale
        cover = np.zeros(px.shape, np.float32)
        near = (np.abs(px) < 0.3) & (py > -0.56) & (py < -0.1)  # where strands can reach
        rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
        if not len(rows) or not len(cols):
            return cover, np.zeros((*px.shape, 3), np.float32)
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        bx_, by_, part = px[box], py[box], cover[box]
        for root_angle, length, curl, width in self.strands:
            points = []
            for i in range(7):
                f = i / 6
                ang = root_angle + curl * f + 0.25 * pose["sway"] * f * f
                r = 0.12 + length * f
                points.append((r * math.cos(ang), -0.28 + r * math.sin(ang)))
            for (ax, ay), (bx, by) in itertools.pairwise(points):
                _, dist = _segment(bx_, by_, ax, ay, bx, by)
                d = dist * s
                if width <= 1.0:
                    c = width * np.clip(1.0 - d, 0.0, 1.0)
                else:
                    c = np.clip(0.5 + width / 2 - d, 0.0, 1.0)
                np.maximum(part, c, out=part)
        paint = np.broadcast_to(np.float32(_STRAND) * self._shade(px, py, 5.0, 0.15), (*px.shape, 3))
        return cover, np.array(paint, np.float32)


def _strands(rng: np.random.Generator, count: int) -> list[tuple[float, float, float, float]]:
    """(root angle on the head, length, curl, width px) of each strand."""
    out = []
    for _ in range(count):
        angle = rng.uniform(-math.pi * 0.95, -math.pi * 0.05)  # the upper half of the head
        out.append((angle, rng.uniform(0.04, 0.11), rng.uniform(-0.5, 0.5), rng.uniform(0.4, 1.2)))
    return out


def _box_sdf(x: np.ndarray, y: np.ndarray, hx: float, hy: float, r: float) -> np.ndarray:
    qx = np.abs(x) - (hx - r)
    qy = np.abs(y) - (hy - r)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - r


def _segment(x: np.ndarray, y: np.ndarray, ax: float, ay: float, bx: float, by: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """(position along a→b in [0, 1], distance to the segment) per pixel."""
    dx, dy = bx - ax, by - ay
    f = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return f, np.hypot(x - (ax + f * dx), y - (ay + f * dy))


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + t * (b - a)


# --- the screen ----------------------------------------------------------------------------


def _screen_light(rng: np.random.Generator, w: int, h: int, screen: str, vignetting: float,
                  wrinkles: float) -> np.ndarray:
    """The unevenly lit screen, before the figure's shadow: (H, W, 3)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    nx, ny = (x - w / 2) / (w / 2), (y - h / 2) / (h / 2)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + 0.18 * (math.cos(angle) * nx + math.sin(angle) * ny)
    vignette = 1.0 - vignetting * np.clip((nx * nx * 0.6 + ny * ny * 0.4), 0.0, 1.0) ** 1.2
    # Folds: a few long, soft diagonal creases; blotches: low-frequency value noise.
    folds = np.zeros((h, w), np.float32)
    for _ in range(4):
        a = rng.uniform(-0.6, 0.6) + math.pi / 2
        offset = rng.uniform(-1, 1)
        d = (math.cos(a) * nx + math.sin(a) * ny - offset) / rng.uniform(0.05, 0.15)
        folds += np.exp(-d * d) * rng.choice([-1.0, 1.0]) * (1.0 - 0.5 * np.abs(np.sin(d)))
    blotches = _value_noise(rng, h, w, 3, 3)
    light = gradient * vignette * (1.0 + wrinkles * (folds + blotches))
    tint = 1.0 + 0.04 * _value_noise(rng, h, w, 2, 2)[..., None] * np.float32([1.0, -0.3, 0.6])
    return np.clip(np.float32(SCREENS[screen]) * light[..., None] * tint, 0.0, 1.0).astype(np.float32)


# --- the plate -----------------------------------------------------------------------------


def _plate(rng: np.random.Generator, n: int, w: int, h: int, shift: tuple[float, float]
           ) -> tuple[np.ndarray, tuple[float, float]]:
    sx, sy = float(shift[0]), float(shift[1])
    margin = 4
    cw = math.ceil(w + abs(sx) * n) + 2 * margin
    ch = math.ceil(h + abs(sy) * n) + 2 * margin
    y = np.linspace(0.0, 1.0, ch, dtype=np.float32)[:, None, None]
    sky = _mix(np.float32([0.42, 0.58, 0.86]), np.float32([0.88, 0.80, 0.68]), y)
    canvas = np.broadcast_to(sky, (ch, cw, 3)).copy()
    canvas += 0.04 * _value_noise(rng, ch, cw, 3, 3)[..., None]
    # Hills, then buildings with windows: hard edges whose motion is easy to measure.
    hill = 0.62 + 0.08 * _value_noise(rng, 1, cw, 3, 4)[0]
    rows = np.arange(ch, dtype=np.float32)[:, None] / ch
    ground = np.clip((rows - hill[None, :]) * ch, 0.0, 1.0)[..., None]
    earth = np.float32([0.42, 0.36, 0.22]) * (1.0 + 0.25 * _value_noise(rng, ch, cw, 4, 8))[..., None]
    canvas = canvas + ground * (earth - canvas)
    x = 0
    while x < cw:
        bw = int(rng.integers(max(6, w // 16), max(8, w // 7)))
        bh = int(rng.integers(h // 5, h // 2))
        top = int(0.7 * ch) - bh
        colour = (0.3 + 0.5 * rng.random(3) * np.float32([1.0, 0.7, 0.8])).astype(np.float32)
        canvas[top : int(0.7 * ch), x : x + bw] = colour
        step = max(3, bw // 4)
        for wy in range(top + 2, int(0.7 * ch) - 2, step):
            for wx in range(x + 2, x + bw - 2, step):
                canvas[wy : wy + max(1, step // 2), wx : wx + max(1, step // 2)] = (0.95, 0.9, 0.6)
        x += bw + int(rng.integers(0, max(2, w // 20)))
    canvas = np.clip(canvas, 0.0, 1.0).astype(np.float32)
    x0 = margin + (abs(sx) * n if sx < 0 else 0)
    y0 = margin + (abs(sy) * n if sy < 0 else 0)
    frames = np.empty((n, h, w, 3), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = 0.07 * h
    for t in range(n):
        m = np.float32([[1, 0, -(x0 + sx * t)], [0, 1, -(y0 + sy * t)]])
        frame = cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        # A balloon that drifts against the pan and bobs: motion inside the plate.
        bx = w * 0.8 - 1.5 * t
        by = h * 0.25 + 0.05 * h * math.sin(t / 4.0)
        cover = np.clip(radius - np.hypot(xx - bx, yy - by) + 0.5, 0.0, 1.0)[..., None]
        frames[t] = frame + cover * (np.float32([0.85, 0.15, 0.2]) - frame)
    return frames, (sx, sy)


# --- shared helpers -----------------------------------------------------------------------


def _value_noise(rng: np.random.Generator, h: int, w: int, octaves: int, base: int) -> np.ndarray:
    """Smooth multi-octave noise in about [-1, 1]."""
    return np.clip(value_noise(rng, h, w, octaves, base, decay=0.55), -1.5, 1.5)


def _write_rgb(path: str | os.PathLike[str], frames: np.ndarray, fps: Fraction, codec: str) -> Path:
    _n, h, w = frames.shape[:3]
    with VideoWriter(path, width=w, height=h, rate=fps, codec=codec, input_dtype=np.uint16) as writer:
        for frame in frames:
            writer.write(from_float(frame, np.uint16))
    return Path(path)
