"""What a reviewer and a TD see in the Prefect UI, as markdown with images inlined.

The UI runs in a browser that may not see the render machine's disks, so images travel inside the
markdown as `data:` URIs. They are downscaled JPEGs: a page of ten keyframe pairs stays well under
a megabyte, which the UI renders without trouble, while a person can still judge the edit.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from studio_nova.media.frames import from_float
from studio_nova.media.keyframe_files import read_png

PREVIEW_SIDE = 320  # longest side of a keyframe preview, pixels
STILL_SIDE = 480  # longest side of a before/after still
JPEG_QUALITY = 82


def data_uri(image: np.ndarray, max_side: int = PREVIEW_SIDE, quality: int = JPEG_QUALITY) -> str:
    """A float RGB image in [0, 1] (or uint8) as a downscaled JPEG `data:` URI."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3, got shape {image.shape}")
    if max_side < 8:
        raise ValueError(f"max_side must be at least 8, got {max_side}")
    samples = image if image.dtype == np.uint8 else from_float(np.clip(image, 0.0, 1.0), np.uint8)
    picture = Image.fromarray(samples, "RGB")
    scale = max_side / max(picture.size)
    if scale < 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_data_uri(path: str | Path, max_side: int = PREVIEW_SIDE) -> str:
    """A keyframe PNG (8 or 16 bit) as a downscaled JPEG `data:` URI."""
    return data_uri(read_png(path), max_side)


@dataclass(frozen=True)
class KeyframePair:
    source_frame: int
    original: str | Path
    edited: str | Path


@dataclass(frozen=True)
class ReviewPage:
    """Everything the reviewer of one shot's keyframe version needs to decide."""

    shot: str
    key: str
    version: int
    instruction: str
    editor: str
    seed: int
    pairs: Sequence[KeyframePair]
    history: Sequence[str] = ()  # earlier decisions, one line each
    problem: str | None = None  # why the last answer was not accepted
    expires_at: datetime | None = None


def _cell(text: object) -> str:
    """Table-safe text: the instruction comes from an editor's cut and may hold `|` or markup."""
    return html.escape(str(text)).replace("|", "&#124;").replace("\n", " ")


def review_markdown(page: ReviewPage, max_side: int = PREVIEW_SIDE) -> str:
    """The description above the resume form. The UI shows it in a short scrolling box, so the
    keyframes (original | edited) come right after one line saying what the edit is."""
    lines = []
    if page.problem:
        lines += [f"> **Your last answer was not accepted:** {_cell(page.problem)}. Please answer again.", ""]
    lines += [
        f"### {_cell(page.shot)} ({_cell(page.key)}) keyframes v{page.version:03d}: "
        f"\u201c{_cell(page.instruction) or '(no instruction)'}\u201d, editor `{_cell(page.editor)}`, seed {page.seed}",
        "",
        "| source frame | original | edited |",
        "| ---: | :---: | :---: |",
    ]
    for pair in page.pairs:
        original = file_data_uri(pair.original, max_side)
        edited = file_data_uri(pair.edited, max_side)
        lines.append(
            f"| {pair.source_frame} | ![original {pair.source_frame}]({original}) "
            f"| ![edited {pair.source_frame}]({edited}) |"
        )
    lines += [
        "",
        f"- **instruction:** {_cell(page.instruction) or '(none)'}",
        f"- **editor:** `{_cell(page.editor)}`",
        f"- **seed:** {page.seed}",
        f"- **keyframes:** {len(page.pairs)} (source frames {', '.join(str(p.source_frame) for p in page.pairs)})",
    ]
    if page.expires_at is not None:
        lines.append(f"- **answer by:** {page.expires_at:%Y-%m-%d %H:%M} UTC (the review expires after that)")
    for entry in page.history:
        lines.append(f"- earlier: {_cell(entry)}")
    lines += [
        "",
        "Approve to render the shot. To re-edit, choose reject, say what is wrong in the notes, and "
        "optionally give a new instruction or seed. Fill in your name as reviewer.",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Still:
    """A before/after pair of one rendered shot, at the same source frame."""

    shot: str
    version: str
    source_frame: int
    before: np.ndarray
    after: np.ndarray


def stills_markdown(stills: Sequence[Still], max_side: int = STILL_SIDE) -> str:
    """The morning report's contact sheet: each rendered shot before | after."""
    if not stills:
        return "No rendered shots yet.\n"
    lines = ["| shot | version | source frame | before | after |", "| --- | --- | ---: | :---: | :---: |"]
    for s in stills:
        lines.append(
            f"| {_cell(s.shot)} | {_cell(s.version)} | {s.source_frame} "
            f"| ![before]({data_uri(s.before, max_side)}) | ![after]({data_uri(s.after, max_side)}) |"
        )
    return "\n".join(lines) + "\n"
