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

    Frame timing (measured by `probe` from every frame's timestamp): `min_rate` / `max_rate` /
    `mean_rate` are the slowest, fastest and average rates its frames are shown at (None without
    timestamps); `vfr` is True when the timestamps do not follow a constant `rate`: some frame is
    shown half a frame or more away from `i / rate` (see `media.vfr`). `resampled` marks a
    constant-rate *view* of such a file (`media.vfr.conform_vfr`): `rate` and `frame_count` are
    then the view's, and decoding picks the source frame shown at each of its frame times.

    Size: `width` × `height` is the picture. `coded_size` is set when the file stores a larger
    picture than that (an odd size padded to even for H.264 4:2:0, recorded by our writer in the
    `studio_nova_picture_size` tag); decoding crops back to `width` × `height`.
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
    vfr: bool = False
    min_rate: float | None = None  # measured, frames per second
    max_rate: float | None = None
    mean_rate: float | None = None
    resampled: bool = False  # a constant-rate view of variable-rate media (`media.vfr`)
    coded_size: tuple[int, int] | None = None  # stored (padded) size, when larger than the picture
    is_image: bool = False  # an image file (PNG, JPEG, ...) read as a one-frame video

    @property
    def dtype_name(self) -> str:
        """numpy dtype of decoded RGB frames: uint8 for 8-bit sources, uint16 above."""
        return "uint8" if self.bit_depth <= 8 else "uint16"
