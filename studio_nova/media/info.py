"""What the pipeline needs to know about a media file, read without ffprobe."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True)
class MediaInfo:
    """Facts about the first video stream of a media file.

    `frame_count` is the number of frames ffmpeg decodes; source frame `i` (DESIGN section 4)
    is the `i`-th of them, 0-based. `start_frame` is the embedded start timecode as a frame
    count at `rate` (0 when the file has none).
    """

    path: Path
    width: int
    height: int
    rate: Fraction
    frame_count: int
    pix_fmt: str
    bit_depth: int
    codec: str
    color_matrix: str = "bt709"  # matrix used for every YUV<->RGB conversion of this file
    timecode: str | None = None
    start_frame: int = 0
    has_alpha: bool = False
    comment: str | None = None  # the container's `comment` metadata (renders: their identity)

    @property
    def dtype_name(self) -> str:
        """numpy dtype of decoded RGB frames: uint8 for 8-bit sources, uint16 above."""
        return "uint8" if self.bit_depth <= 8 else "uint16"
