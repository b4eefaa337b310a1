"""`still`: one picture held for the whole shot, optionally with a slow move (zoom and pan).

Params (the request's ``background.params``):

- ``image`` (required): a PNG, JPEG, TIFF or OpenEXR file, 8/16-bit or float; a relative path
  resolves against the timeline's folder.
- ``fit``: ``cover`` (default: fill the frame, crop the excess at ``anchor``), ``contain`` (fit
  inside, letterbox with ``fill``) or ``stretch`` (each axis to the frame).
- ``anchor``: [x, y] in [0, 1], where the crop (or the letterboxed picture) sits; default the
  centre [0.5, 0.5].
- ``fill``: the letterbox colour, a grey level or [r, g, b] in [0, 1]; default black.
- ``move``: a slow move over the shot, ``{"zoom": [start, end], "pan": [[x, y], [x, y]],
  "ease": "linear" | "ease"}``, every key optional. ``zoom`` multiplies the fit's scale about
  the frame's centre (1 = the fit itself). ``pan`` moves the camera by fractions of the frame
  (at zoom 1): [0.05, 0] ends the shot 5 % of a frame width further right, so the picture
  slides left. ``ease`` ``linear`` (default) moves at constant speed, ``ease`` eases in and
  out. With ``cover`` or ``stretch`` the move must stay inside the picture (an error says by
  how much it does not).

Without a move every frame is the same picture. With one, each frame's transform is an affine of
the picture computed from its offset alone — t = offset / (frame_count − 1) — never accumulated,
so chunks agree exactly and nothing drifts or jitters. The picture is area-averaged once to about
the largest scale the move needs, and each frame is then resampled from it with a Lanczos kernel
at sub-pixel precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from studio_nova.errors import EditRequestError
from studio_nova.plugin_api.backgrounds import BackgroundContext
from studio_nova_plugins.backgrounds._common import (
    Framing,
    apply_static,
    bad_param,
    check_offsets,
    choice_param,
    is_number,
    path_param,
    read_still,
    reject_unknown,
    resample,
    resolve_file,
    static_plan,
)

EASES = ("linear", "ease")
_MOVE_KEYS = ("zoom", "pan", "ease")
_ZOOM_RANGE = (0.1, 10.0)
_PAN_RANGE = (-1.0, 1.0)
_EDGE_TOLERANCE = 1e-6  # of the picture's size: a view exactly on the edge is inside


@dataclass(frozen=True)
class Move:
    """A linear (or eased) move from `zoom[0]`, `pan[0]` at the first frame to the ends at the last."""

    zoom: tuple[float, float] = (1.0, 1.0)
    pan: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))
    ease: str = "linear"

    @classmethod
    def parse(cls, value: Any) -> "Move | None":
        if value is None:
            return None
        example = '{"zoom": [1.0, 1.1], "pan": [[0, 0], [0.05, 0]]}'
        if not isinstance(value, Mapping):
            raise bad_param("still", "move", f"a dict like {example}", value)
        unknown = sorted(set(value) - set(_MOVE_KEYS))
        if unknown:
            raise EditRequestError(
                f"still background param move does not know {unknown}; it takes {list(_MOVE_KEYS)}, e.g. {example}",
                param="move",
            )
        zoom = value.get("zoom", [1.0, 1.0])
        if is_number(zoom):
            zoom = [zoom, zoom]
        low, high = _ZOOM_RANGE
        if (
            not isinstance(zoom, (list, tuple))
            or len(zoom) != 2
            or not all(is_number(z) and low <= z <= high for z in zoom)
        ):
            raise bad_param("still", "move.zoom", f"[start, end] with each in [{low}, {high}]", value.get("zoom"))
        pan = value.get("pan", [[0.0, 0.0], [0.0, 0.0]])
        low, high = _PAN_RANGE
        ok = (
            isinstance(pan, (list, tuple))
            and len(pan) == 2
            and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(is_number(v) and low <= v <= high for v in p)
                for p in pan
            )
        )
        if not ok:
            raise bad_param("still", "move.pan", f"[[x, y], [x, y]] (start, end) with each in [{low}, {high}]", pan)
        ease = choice_param("still", "move.ease", value.get("ease", "linear"), EASES)
        return cls(
            zoom=(float(zoom[0]), float(zoom[1])),
            pan=((float(pan[0][0]), float(pan[0][1])), (float(pan[1][0]), float(pan[1][1]))),
            ease=ease,
        )

    def at(self, t: float) -> tuple[float, float, float]:
        """(zoom, pan x, pan y) at shot time t in [0, 1]."""
        if self.ease == "ease":
            t = t * t * (3.0 - 2.0 * t)
        (x0, y0), (x1, y1) = self.pan
        return (
            self.zoom[0] + (self.zoom[1] - self.zoom[0]) * t,
            x0 + (x1 - x0) * t,
            y0 + (y1 - y0) * t,
        )


@dataclass(frozen=True)
class _Prepared:
    """A picture made ready for a move at one frame size: area-averaged once, then warped per frame."""

    picture: np.ndarray  # float32, pre-shrunk
    factors: tuple[float, float]  # pre-shrunk size / original size, per axis
    view: tuple[float, float, float, float]  # centre x, centre y, scale x, scale y (original picture)


class StillBackground:
    """A still picture held for the shot, optionally with a slow zoom / pan."""

    name = "still"
    params = ("image", "fit", "anchor", "fill", "move")

    def __init__(
        self,
        *,
        image: Any = None,
        fit: Any = "cover",
        anchor: Any = (0.5, 0.5),
        fill: Any = 0.0,
        move: Any = None,
        **unknown: Any,
    ) -> None:
        reject_unknown(self.name, unknown, self.params)
        if image is None:
            raise EditRequestError(
                'still background needs params image, e.g. {"image": "stills/harbour.png"}', param="image"
            )
        self.image = path_param(self.name, "image", image)
        self.framing = Framing.parse(self.name, fit, anchor, fill)
        self.move = Move.parse(move)
        self._picture: tuple[Path, np.ndarray] | None = None
        self._frame: tuple[tuple[int, int], np.ndarray] | None = None  # no move: the one frame
        self._prepared: tuple[tuple[int, int, int], _Prepared] | None = None  # with a move
        if Path(self.image).expanduser().is_absolute():
            resolve_file(self.name, "image", self.image, None)  # a missing file fails at once

    @classmethod
    def readiness(cls) -> tuple[bool, str | None]:
        return True, None

    def frames(self, context: BackgroundContext, offsets: Sequence[int]) -> np.ndarray:
        steps = check_offsets(offsets)
        out = np.empty((len(steps), context.height, context.width, 3), np.float32)
        if not len(steps):
            return out
        if self.move is None:
            out[:] = self._static(context)
            return out
        prepared = self._prepare(context)
        last = max(context.frame_count - 1, 1)
        for i, offset in enumerate(steps):
            self._warp(prepared, min(float(offset) / last, 1.0), context, out[i])
        return out

    # --- the picture -------------------------------------------------------------------------

    def _load(self, context: BackgroundContext) -> np.ndarray:
        path = resolve_file(self.name, "image", self.image, context.base_dir, context.shot)
        if self._picture is None or self._picture[0] != path:
            self._picture = (path, read_still(path, self.name, context.shot))
        return self._picture[1]

    def _static(self, context: BackgroundContext) -> np.ndarray:
        size = (context.width, context.height)
        if self._frame is None or self._frame[0] != size:
            picture = self._load(context)
            plan = static_plan(self.framing, picture.shape[1], picture.shape[0], *size)
            self._frame = (size, apply_static(picture, plan))
            self._picture = None  # the frame is all that is needed from now on
        return self._frame[1]

    # --- the move ----------------------------------------------------------------------------

    def _prepare(self, context: BackgroundContext) -> _Prepared:
        key = (context.width, context.height, context.frame_count)
        if self._prepared is not None and self._prepared[0] == key:
            return self._prepared[1]
        assert self.move is not None
        picture = self._load(context)
        height, width = picture.shape[:2]
        view = self.framing.view(width, height, context.width, context.height)
        self._check_inside(view, width, height, context)
        # Area-average once to the largest scale the move needs (never up), so every frame only
        # shrinks a little more, or not at all, from there.
        zooms = self.move.zoom
        need_x, need_y = view[2] * max(zooms), view[3] * max(zooms)
        new_w = max(1, round(width * need_x)) if need_x < 1 else width
        new_h = max(1, round(height * need_y)) if need_y < 1 else height
        small = resample(picture, new_w, new_h)
        prepared = _Prepared(np.ascontiguousarray(small, np.float32), (new_w / width, new_h / height), view)
        self._prepared = (key, prepared)
        self._picture = None
        return prepared

    def _check_inside(
        self, view: tuple[float, float, float, float], width: int, height: int, context: BackgroundContext
    ) -> None:
        if self.framing.fit == "contain":
            return  # the letterbox already shows fill; a move may show more of it
        assert self.move is not None
        cx, cy, sx, sy = view
        for when, t in (("start", 0.0), ("end", 1.0)):
            zoom, pan_x, pan_y = self.move.at(t)
            centre_x = cx + pan_x * context.width / sx
            centre_y = cy + pan_y * context.height / sy
            half_w, half_h = context.width / (2 * sx * zoom), context.height / (2 * sy * zoom)
            beyond = {
                "left": -(centre_x - half_w) / width,
                "right": (centre_x + half_w - width) / width,
                "top": -(centre_y - half_h) / height,
                "bottom": (centre_y + half_h - height) / height,
            }
            edge, by = max(beyond.items(), key=lambda item: item[1])
            if by > _EDGE_TOLERANCE:
                raise EditRequestError(
                    f"still background param move shows {by:.1%} of the picture's size beyond its {edge} edge "
                    f"at the {when} of the shot (zoom {zoom:g}, pan [{pan_x:g}, {pan_y:g}], fit "
                    f"{self.framing.fit}); raise zoom, reduce pan, move anchor, or use fit contain",
                    shot=context.shot,
                    param="move",
                )

    def _warp(self, prepared: _Prepared, t: float, context: BackgroundContext, out: np.ndarray) -> None:
        assert self.move is not None
        zoom, pan_x, pan_y = self.move.at(t)
        cx, cy, sx, sy = prepared.view
        fx, fy = prepared.factors
        # Continuous coordinates: frame u = (x − centre) · scale + W / 2, with x = x' / f on the
        # pre-shrunk picture; OpenCV's index coordinates are both shifted by half a pixel.
        centre_x = cx + pan_x * context.width / sx
        centre_y = cy + pan_y * context.height / sy
        scale_x, scale_y = sx * zoom, sy * zoom
        a_x, a_y = scale_x / fx, scale_y / fy
        matrix = np.array(
            [
                [a_x, 0.0, 0.5 * a_x - centre_x * scale_x + context.width / 2 - 0.5],
                [0.0, a_y, 0.5 * a_y - centre_y * scale_y + context.height / 2 - 0.5],
            ]
        )
        if self.framing.fit == "contain":
            border, value = cv2.BORDER_CONSTANT, tuple(float(v) for v in self.framing.fill)
        else:
            border, value = cv2.BORDER_REPLICATE, (0.0, 0.0, 0.0)
        cv2.warpAffine(
            prepared.picture,
            matrix,
            (context.width, context.height),
            dst=out,
            flags=cv2.INTER_LANCZOS4,
            borderMode=border,
            borderValue=value,
        )
        np.clip(out, 0.0, 1.0, out=out)
