"""A contact sheet of training samples, so a person can see what the model learns from.

One row per (sample, keyframe): `target | degraded keyframe | pseudo-source`, at the keyframe's
frame. The degraded region is outlined in yellow on the keyframe, the pasted content in cyan on
the pseudo-source; a label above each row says which clip, frame and keyframe interval it is.
Panels are the model-resolution frames scaled (nearest) to `panel_width`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from studio_nova.atomic import write_bytes, write_json
from studio_nova.media.frames import from_float
from studio_nova.training.data import TrainingSample

COLUMNS = ("target", "degraded keyframe", "pseudo-source")
MARGIN = 6
HEADER = 22
LABEL = 16
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_REGION_RGB = (255, 220, 0)
_PASTE_RGB = (0, 220, 255)


def panel_size(height: int, width: int, panel_width: int) -> tuple[int, int]:
    """(h, w) of one panel: the frame scaled to `panel_width`, aspect kept."""
    return max(1, round(height * panel_width / width)), panel_width


def sheet_size(rows: int, height: int, width: int, panel_width: int) -> tuple[int, int]:
    """(H, W) of a sheet of `rows` rows of frames `height`×`width`."""
    ph, pw = panel_size(height, width, panel_width)
    return HEADER + rows * (LABEL + ph + MARGIN), MARGIN + len(COLUMNS) * (pw + MARGIN)


def sheet_rows(sample: TrainingSample, per_sample: int) -> list[int]:
    """The keyframes of a sample shown on the sheet: `per_sample` of them, spread out."""
    keys = sorted(sample.keyframes)
    picks = np.linspace(0, len(keys) - 1, min(per_sample, len(keys))).round().astype(int)
    return [keys[i] for i in dict.fromkeys(picks.tolist())]


def contact_sheet(samples: Sequence[TrainingSample], *, per_sample: int = 2, panel_width: int = 192) -> np.ndarray:
    """The sheet as an RGB uint8 image (see the module doc for the layout)."""
    if not samples:
        raise ValueError("samples is empty: a contact sheet needs at least one sample")
    height, width = samples[0].target.shape[1:3]
    ph, pw = panel_size(height, width, panel_width)
    rows = [(s, t) for s in samples for t in sheet_rows(s, per_sample)]
    sheet_h, sheet_w = sheet_size(len(rows), height, width, panel_width)
    sheet = np.full((sheet_h, sheet_w, 3), 24, np.uint8)
    for c, title in enumerate(COLUMNS):
        _text(sheet, title, MARGIN + c * (pw + MARGIN), HEADER - 7, 0.45)
    for r, (sample, t) in enumerate(rows):
        top = HEADER + r * (LABEL + ph + MARGIN)
        meta = sample.meta
        label = (f"#{sample.index} {meta.get('clip', '?')} frame {meta.get('first_frame', 0) + t} "
                 f"(t={t}, every {sample.interval})")
        _text(sheet, label, MARGIN, top + LABEL - 4, 0.35)
        y = top + LABEL
        panels = [
            (sample.target[t], None, None),
            (sample.keyframes[t], sample.regions[t], _REGION_RGB),
            (sample.pseudo_source[t], sample.paste_masks[t], _PASTE_RGB),
        ]
        for c, (image, mask, colour) in enumerate(panels):
            x = MARGIN + c * (pw + MARGIN)
            sheet[y:y + ph, x:x + pw] = _panel(image, mask, colour, ph, pw)
    return sheet


def _panel(image: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int] | None, ph: int, pw: int) -> np.ndarray:
    out = cv2.resize(from_float(np.clip(image, 0.0, 1.0), np.uint8), (pw, ph), interpolation=cv2.INTER_NEAREST)
    if mask is not None and colour is not None and (mask > 0.5).any() and not (mask > 0.5).all():
        big = cv2.resize((mask > 0.5).astype(np.uint8), (pw, ph), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        out = np.ascontiguousarray(out)
        cv2.drawContours(out, contours, -1, colour, 1)
    return out


def _text(image: np.ndarray, text: str, x: int, y: int, scale: float) -> None:
    cv2.putText(image, text, (x, y), _FONT, scale, (230, 230, 230), 1, cv2.LINE_AA)


def write_contact_sheet(
    path: str | os.PathLike[str], samples: Sequence[TrainingSample], *, per_sample: int = 2, panel_width: int = 192
) -> Path:
    """Write the sheet as PNG at `path` and, next to it, a JSON file that says what each sample
    is (clip, frames, interval, degradations); each file atomically (`studio_nova.atomic`)."""
    path = Path(path)
    sheet = contact_sheet(samples, per_sample=per_sample, panel_width=panel_width)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not PNG-encode the contact sheet")
    write_bytes(path, png.tobytes())
    described: list[dict[str, Any]] = [
        {**s.meta, "keyframes": sorted(s.keyframes), "rows": sheet_rows(s, per_sample), "caption": s.caption}
        for s in samples
    ]
    write_json(path.with_suffix(".json"), described)
    return path
