"""Synthetic footage with a known ground truth.

Real footage cannot say what a "correct" propagated edit is; a drawn scene can. `make_scene`
films a textured world through a moving camera, with textured objects whose exact (antialiased,
occlusion-aware) coverage is known per frame. Edits applied through those masks give the true
edited video, so propagation quality is a number (PSNR against the truth), not an opinion.

The scene is built to be hard in the ways real shots are hard: the camera pans and zooms, so
nothing is static; the "target" object has a "twin" of the same colour elsewhere, so an edit of
the target alone cannot be explained by colour; an occluder crosses in front of the target; and
sensor noise differs from frame to frame.

Also here: reference edits (`hue_rotate`, `colour_grade`, `colour_key`) used to make truths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# Colour of "target" and "twin": a strongly saturated red that nothing else in the scene has.
TARGET_RGB = (0.82, 0.10, 0.09)

_MARGIN = 1.6  # world canvas size relative to the frame, so the camera never sees its edge


@dataclass
class Scene:
    """Frames of a synthetic shot and, per object, its visible coverage in every frame.

    `masks[name][t]` is how much of each pixel of frame `t` the object covers *and is seen*
    (objects in front of it are taken out), antialiased, in [0, 1].
    """

    frames: np.ndarray  # (N, H, W, 3) uint8
    masks: dict[str, np.ndarray]  # name -> (N, H, W) float32
    fps: float = 25.0
    seed: int = 0
    info: dict[str, float] = field(default_factory=dict)


@dataclass
class _Sprite:
    name: str
    rgba: np.ndarray  # (h, w, 4) float32, colour premultiplied by nothing: alpha in channel 3
    path: np.ndarray  # (N, 3): world x, y of the sprite centre and rotation (radians) per frame
    scale: float = 1.0


def make_scene(
    n_frames: int,
    width: int,
    height: int,
    *,
    seed: int,
    camera_motion: bool = True,
    occluder: bool = True,
    noise: float = 0.01,
    fps: float = 25.0,
) -> Scene:
    """Draw `n_frames` of a synthetic shot at `width`×`height`, deterministically per `seed`.

    Objects: "target" and "twin" (same strong red, different shape and place), "ball" and
    "box" (other colours), and, when `occluder` is set, "occluder" (a grey pole that passes in
    front of the target around the middle of the shot). `noise` is the standard deviation of
    per-frame Gaussian sensor noise in [0, 1] units.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if width < 16 or height < 16:
        raise ValueError(f"width and height must be at least 16, got {width}x{height}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    rng = np.random.default_rng(seed)
    background = _background(rng, int(width * _MARGIN), int(height * _MARGIN))
    cameras = _camera_path(rng, n_frames, width, height, background.shape[:2], camera_motion)
    sprites = _sprites(rng, n_frames, width, height, background.shape[:2], occluder)

    frames = np.empty((n_frames, height, width, 3), np.uint8)
    masks = {s.name: np.zeros((n_frames, height, width), np.float32) for s in sprites}
    # Drawing fresh Gaussian samples costs more than the rest of a frame; a per-frame random
    # crop of a larger pool is just as white in space and independent enough in time.
    pad = 32
    pool = rng.standard_normal((height + pad, width + pad, 3), dtype=np.float32)
    pool *= np.float32(noise)
    to_uint8 = (255.0, 255.0, 255.0, 255.0)
    for t in range(n_frames):
        cam = cameras[t]
        image = cv2.warpAffine(
            background, cam, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        boxes: dict[str, tuple[int, int, int, int]] = {}
        for s in sprites:  # back to front
            _composite(image, masks, t, s, cam, boxes)
        if noise > 0:
            dy, dx = rng.integers(0, pad + 1, size=2)
            sign = 1.0 if rng.random() < 0.5 else -1.0
            image = cv2.scaleAdd(pool[dy:dy + height, dx:dx + width], sign, image)
        frames[t] = cv2.multiply(image, to_uint8, dtype=cv2.CV_8U)  # rounds and saturates
    return Scene(frames=frames, masks=masks, fps=fps, seed=seed)


# --- drawing -------------------------------------------------------------------------------


def value_noise(
    rng: np.random.Generator, h: int, w: int, octaves: int, base: int, decay: float = 0.6
) -> np.ndarray:
    """Multi-octave smooth noise in about [-1, 1]: texture that optical flow can lock onto."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2**o
        grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= decay
    return out / total



def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A muted, textured world: soft gradients, mottled noise and a few hard-edged shapes."""
    tone = value_noise(rng, h, w, 5, 3)
    tint = value_noise(rng, h, w, 2, 2)
    base = np.array([0.42, 0.48, 0.40], np.float32)  # greenish grey: far from the target's red
    image = base + 0.16 * tone[..., None] + 0.08 * tint[..., None] * np.array(
        [-0.6, 0.4, 0.9], np.float32
    )
    # Hard edges (walls, windows, signs) in desaturated colours.
    for _ in range(10):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1 = x0 + int(rng.integers(w // 20, w // 5))
        y1 = y0 + int(rng.integers(h // 20, h // 4))
        colour = (0.25 + 0.5 * rng.random(3) * np.array([0.6, 1.0, 1.0])).astype(np.float32)
        cv2.rectangle(image, (x0, y0), (x1, y1), colour.tolist(), -1, cv2.LINE_AA)
    for _ in range(6):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(image, p0, p1, (0.15, 0.17, 0.2), max(1, h // 120), cv2.LINE_AA)
    fine = value_noise(rng, h, w, 2, max(8, w // 12))
    image += 0.05 * fine[..., None]
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _soft_shape(h: int, w: int, kind: str) -> np.ndarray:
    """Antialiased coverage of an ellipse, rounded box or pole filling an h×w sprite."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    if kind == "ellipse":
        rx, ry = w / 2.0 - 1.5, h / 2.0 - 1.5
        nx, ny = (x - cx) / rx, (y - cy) / ry
        # Signed distance in pixels, to first order: the implicit function over its gradient.
        implicit = nx * nx + ny * ny - 1.0
        grad = 2.0 * np.sqrt((nx / rx) ** 2 + (ny / ry) ** 2)
        sdf = implicit / np.maximum(grad, 1e-6)
    else:
        corner = min(h, w) * (0.25 if kind == "box" else 0.45)
        qx = np.abs(x - cx) - (w / 2.0 - 1.5 - corner)
        qy = np.abs(y - cy) - (h / 2.0 - 1.5 - corner)
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        sdf = outside + np.minimum(np.maximum(qx, qy), 0) - corner
    return np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32)


def _textured(rng: np.random.Generator, h: int, w: int, rgb: tuple[float, float, float],
              contrast: float, kind: str) -> np.ndarray:
    """An RGBA sprite: the object's colour modulated by its own texture and a hard stripe."""
    tex = value_noise(rng, h, w, 3, 3) + 0.5 * value_noise(rng, h, w, 1, max(4, w // 6))
    rgba = np.empty((h, w, 4), np.float32)
    colour = np.asarray(rgb, np.float32)
    shade = 1.0 + contrast * tex
    rgba[..., :3] = colour * shade[..., None]
    # A darker band across the object gives flow a strong edge inside it.
    band = slice(int(h * 0.55), int(h * 0.55) + max(2, h // 10))
    rgba[band, :, :3] *= 0.7
    rgba[..., :3] = np.clip(rgba[..., :3], 0.0, 1.0)
    rgba[..., 3] = _soft_shape(h, w, kind)
    return rgba


def _camera_path(rng: np.random.Generator, n: int, w: int, h: int, world: tuple[int, int],
                 moving: bool) -> list[np.ndarray]:
    """World→frame affine matrices: a smooth pan with a slow zoom-in, or a fixed view."""
    wh, ww = world
    cx0, cy0 = ww / 2.0, wh / 2.0
    span_x, span_y = (ww - w / 1.12) / 2.0 * 0.8, (wh - h / 1.12) / 2.0 * 0.8
    phase = rng.uniform(0, 2 * math.pi)
    out = []
    for t in range(n):
        u = t / max(n - 1, 1)
        if moving:
            cx = cx0 + span_x * (2.0 * u - 1.0) * 0.9 + 0.1 * span_x * math.sin(phase + 5 * u)
            cy = cy0 + span_y * 0.5 * math.sin(phase + 3.0 * u)
            zoom = 1.0 + 0.12 * u
        else:
            cx, cy, zoom = cx0, cy0, 1.0
        out.append(
            np.array(
                [[zoom, 0.0, w / 2.0 - zoom * cx], [0.0, zoom, h / 2.0 - zoom * cy]], np.float32
            )
        )
    return out


def _camera_centre(cam: np.ndarray, w: int, h: int) -> tuple[float, float]:
    zoom = float(cam[0, 0])
    return (w / 2.0 - float(cam[0, 2])) / zoom, (h / 2.0 - float(cam[1, 2])) / zoom


def _sprites(rng: np.random.Generator, n: int, w: int, h: int, world: tuple[int, int],
             occluder: bool) -> list[_Sprite]:
    """The objects, back to front, with their world paths.

    Paths are expressed around the world centre so that every object stays in view for the
    whole shot whatever the camera does (the pan is centred on the world too).
    """
    wh, ww = world
    cx, cy = ww / 2.0, wh / 2.0
    u = np.linspace(0.0, 1.0, n, dtype=np.float64)
    pan = (ww - w / 1.12) / 2.0 * 0.8 * 0.9 * (2.0 * u - 1.0)  # follow the camera's pan roughly
    s = min(w, h)

    def path(x0: float, y0: float, vx: float, vy: float, wob: float, rot: float) -> np.ndarray:
        ph = rng.uniform(0, 2 * math.pi)
        x = cx + pan + x0 * w + vx * w * (u - 0.5) + wob * s * np.sin(ph + 4 * u)
        y = cy + y0 * h + vy * h * (u - 0.5) + wob * s * np.cos(ph + 3 * u)
        return np.stack([x, y, rot * np.sin(ph + 2 * u)], axis=1)

    sprites = [
        _Sprite("ball", _textured(rng, int(s * 0.26), int(s * 0.26), (0.85, 0.72, 0.18), 0.25,
                                  "ellipse"), path(0.28, 0.22, -0.15, -0.1, 0.03, 0.3)),
        _Sprite("box", _textured(rng, int(s * 0.24), int(s * 0.34), (0.2, 0.35, 0.75), 0.3,
                                 "box"), path(-0.3, 0.25, 0.1, -0.05, 0.02, 0.2)),
        _Sprite("twin", _textured(rng, int(s * 0.24), int(s * 0.3), TARGET_RGB, 0.2, "box"),
                path(0.3, -0.22, -0.08, 0.1, 0.02, 0.25)),
        _Sprite("target", _textured(rng, int(s * 0.34), int(s * 0.42), TARGET_RGB, 0.2,
                                    "ellipse"), path(-0.08, 0.0, 0.22, 0.05, 0.03, 0.35)),
    ]
    if occluder:
        target_x = sprites[-1].path[:, 0]
        pole = _textured(rng, int(h * 0.95), max(4, int(s * 0.09)), (0.38, 0.37, 0.36), 0.25,
                         "pole")
        # Cross the target from left to right, meeting it in the middle of the shot.
        x = target_x + w * 0.45 * (1.0 - 2.0 * u)
        y = np.full(n, cy)
        sprites.append(_Sprite("occluder", pole, np.stack([x, y, 0.05 * (u - 0.5)], axis=1)))
    return sprites


def _composite(image: np.ndarray, masks: dict[str, np.ndarray], t: int, sprite: _Sprite,
               cam: np.ndarray, boxes: dict[str, tuple[int, int, int, int]]) -> None:
    """Draw one sprite over `image` in place, inside its bounding box only (speed).

    `boxes` holds the boxes of the sprites already drawn in this frame: the new sprite hides
    them where it overlaps, so their visible masks shrink there.
    """
    h, w = image.shape[:2]
    sh, sw = sprite.rgba.shape[:2]
    x, y, rot = sprite.path[t]
    c, s = math.cos(rot) * sprite.scale, math.sin(rot) * sprite.scale
    # sprite pixel -> world: rotate about the sprite centre, then move to (x, y)
    to_world = np.array(
        [[c, -s, x - c * (sw - 1) / 2 + s * (sh - 1) / 2],
         [s, c, y - s * (sw - 1) / 2 - c * (sh - 1) / 2],
         [0.0, 0.0, 1.0]],
        np.float64,
    )
    full = np.vstack([cam.astype(np.float64), [0.0, 0.0, 1.0]]) @ to_world
    corners = full[:2] @ np.array([[0, sw, 0, sw], [0, 0, sh, sh], [1, 1, 1, 1]], np.float64)
    x0 = max(int(math.floor(corners[0].min())) - 1, 0)
    y0 = max(int(math.floor(corners[1].min())) - 1, 0)
    x1 = min(int(math.ceil(corners[0].max())) + 2, w)
    y1 = min(int(math.ceil(corners[1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    local = full[:2].copy()
    local[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(
        sprite.rgba, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0),
    )
    alpha = warped[..., 3]
    roi = image[y0:y1, x0:x1]
    roi += alpha[..., None] * (warped[..., :3] - roi)
    for name, (bx0, by0, bx1, by1) in boxes.items():
        ix0, iy0, ix1, iy1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
        if ix0 < ix1 and iy0 < iy1:
            masks[name][t, iy0:iy1, ix0:ix1] *= 1.0 - alpha[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    masks[sprite.name][t, y0:y1, x0:x1] = alpha
    boxes[sprite.name] = (x0, y0, x1, y1)


# --- reference edits -----------------------------------------------------------------------


def hue_rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate hue about the grey axis, keeping luma: a linear map of RGB (clipped to [0, 1])."""
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    # Rodrigues rotation about (1, 1, 1)/sqrt(3).
    k = 1.0 / 3.0
    r = math.sqrt(k)
    m = np.array(
        [
            [cos + k * (1 - cos), k * (1 - cos) - r * sin, k * (1 - cos) + r * sin],
            [k * (1 - cos) + r * sin, cos + k * (1 - cos), k * (1 - cos) - r * sin],
            [k * (1 - cos) - r * sin, k * (1 - cos) + r * sin, cos + k * (1 - cos)],
        ],
        np.float32,
    )
    return np.clip(rgb.astype(np.float32) @ m.T, 0.0, 1.0)


def colour_grade(rgb: np.ndarray, *, lift: float = 0.0, gamma: float = 1.0, gain: float = 1.0,
                 saturation: float = 1.0, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
                 ) -> np.ndarray:
    """A primary grade: per-channel tint, lift / gamma / gain, then saturation about luma."""
    x = rgb.astype(np.float32) * np.asarray(tint, np.float32)
    x = np.clip(lift + (gain - lift) * np.clip(x, 0.0, 1.0), 0.0, 1.0) ** np.float32(1.0 / gamma)
    luma = x @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    return np.clip(luma[..., None] + saturation * (x - luma[..., None]), 0.0, 1.0)


def colour_key(rgb: np.ndarray, hue_degrees: float = 0.0, width_degrees: float = 30.0,
               min_saturation: float = 0.35) -> np.ndarray:
    """Soft key of saturated colours near a hue (0 = red): 1 inside, falling to 0 over ~15°."""
    x = rgb.astype(np.float32)
    mx, mn = x.max(axis=-1), x.min(axis=-1)
    sat = (mx - mn) / np.maximum(mx, 1e-6)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    hue = np.degrees(np.arctan2(math.sqrt(3.0) * (g - b), 2.0 * r - g - b))
    dist = np.abs((hue - hue_degrees + 180.0) % 360.0 - 180.0)
    hue_key = np.clip((width_degrees / 2.0 + 15.0 - dist) / 15.0, 0.0, 1.0)
    sat_key = np.clip((sat - min_saturation) / 0.15, 0.0, 1.0)
    return (hue_key * sat_key).astype(np.float32)


def apply_through_mask(frames: np.ndarray, edit, mask: np.ndarray | None = None) -> np.ndarray:
    """The true edited frames (float32 [0, 1]): `edit(source)` blended in by `mask` per pixel.

    `frames` are uint8; `mask` is (N, H, W) in [0, 1] or None for a global edit.
    """
    src = frames.astype(np.float32) / 255.0
    edited = edit(src)
    if mask is None:
        return edited.astype(np.float32)
    return (src + mask[..., None] * (edited - src)).astype(np.float32)
