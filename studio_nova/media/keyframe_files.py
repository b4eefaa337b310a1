"""Keyframe and mask images on disk, as PNG.

Keyframes leave the pipeline as PNG files so that a person can paint them in any image tool and
hand them back (the `artist` editor), and so that reviewers can open them. PNG is lossless and
holds 8 or 16 bits per channel, which is enough to round-trip every source depth this pipeline
decodes (8-bit exactly; 10/12-bit through 16-bit exactly).

Files are always written under a temporary name in the target folder and renamed when complete,
so a crash or a full disk never leaves a half-written keyframe that looks finished.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from studio_nova.atomic import write_bytes
from studio_nova.errors import KeyframeError
from studio_nova.media.frames import from_float, to_float

PathArg = str | PathLike[str]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def keyframe_filename(source_frame: int) -> str:
    """The file name of a keyframe: its source frame, zero-padded so folders sort in time order."""
    if isinstance(source_frame, bool) or not isinstance(source_frame, (int, np.integer)):
        raise TypeError(f"source_frame must be an int, got {source_frame!r}")
    if source_frame < 0:
        raise ValueError(f"source_frame must be >= 0, got {source_frame}")
    return f"{int(source_frame):06d}.png"


def png_dtype(bit_depth: int) -> type[np.unsignedinteger]:
    """The PNG sample type that holds `bit_depth` bits without loss (uint8 up to 8, else uint16)."""
    if isinstance(bit_depth, bool) or not isinstance(bit_depth, (int, np.integer)) or bit_depth < 1:
        raise ValueError(f"bit_depth must be a positive int, got {bit_depth!r}")
    return np.uint8 if bit_depth <= 8 else np.uint16


# --- writing -------------------------------------------------------------------------------------


def write_png(
    path: PathArg, image: np.ndarray, bit_depth: int, *, overwrite: bool = False
) -> Path:
    """Write a float RGB image in [0, 1] as an 8-bit (bit_depth <= 8) or 16-bit PNG.

    Writing the same pixels again is a no-op, so reruns are idempotent; a file with *different*
    pixels is refused unless `overwrite=True`, because it may be a person's painted keyframe.
    """
    image = _check_float_image(image, "image", channels=3)
    samples = from_float(image, png_dtype(bit_depth))
    return _write_samples(Path(path), cv2.cvtColor(samples, cv2.COLOR_RGB2BGR), overwrite)


def write_mask_png(
    path: PathArg, mask: np.ndarray, *, bit_depth: int = 8, overwrite: bool = False
) -> Path:
    """Write a float mask in [0, 1] (H×W) as a greyscale PNG; same rules as `write_png`."""
    mask = _check_float_image(mask, "mask", channels=None)
    return _write_samples(Path(path), from_float(mask, png_dtype(bit_depth)), overwrite)


def _check_float_image(array: np.ndarray, name: str, channels: int | None) -> np.ndarray:
    array = np.asarray(array)
    expected = "H×W×3" if channels else "H×W"
    if channels is None:
        shape_ok = array.ndim == 2
    else:
        shape_ok = array.ndim == 3 and array.shape[2] == channels
    if not shape_ok or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty {expected} array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be float in [0, 1], got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _write_samples(path: Path, samples: np.ndarray, overwrite: bool) -> Path:
    ok, encoded = cv2.imencode(".png", samples, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise KeyframeError("could not encode the image as PNG", path=path)
    data = encoded.tobytes()
    if path.exists() and not overwrite:
        if _same_content(path, data, samples):
            return path
        raise KeyframeError(
            "a different image already exists here; it was left untouched "
            "(pass overwrite=True to replace it, or write to a new version)",
            path=path,
        )
    _atomic_write(path, data)
    return path


def _same_content(path: Path, data: bytes, samples: np.ndarray) -> bool:
    """True when the existing file holds these pixels, even if another tool encoded it."""
    try:
        existing_data = _read_bytes(path)
        if existing_data.tobytes() == data:
            return True
        existing = _decode(existing_data, path)
    except KeyframeError:
        return False
    return existing.dtype == samples.dtype and np.array_equal(existing, samples)


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        write_bytes(path, data, fsync=True)
    except OSError as exc:
        raise KeyframeError(f"writing failed: {exc.strerror or exc}", path=path) from exc


# --- reading -------------------------------------------------------------------------------------


def read_png_samples(path: PathArg) -> np.ndarray:
    """The integer RGB samples of a PNG (uint8 or uint16, H×W×3), at the file's own depth.

    Callers that must compare pixels exactly (the `artist` mask) need the file's own
    quantisation, not floats, which is why this is public.
    """
    path = Path(path)
    return _to_rgb(_decode(_read_bytes(path), path), path)


def decode_png_samples(data: bytes, path: PathArg) -> np.ndarray:
    """Like `read_png_samples`, from bytes already read (so a hash and the pixels agree)."""
    path = Path(path)
    return _to_rgb(_decode(np.frombuffer(data, dtype=np.uint8), path), path)


def _to_rgb(samples: np.ndarray, path: Path) -> np.ndarray:
    """Grey expanded to three equal channels, alpha dropped: painters' tools save any layout."""
    if samples.ndim == 2:
        return np.repeat(samples[:, :, None], 3, axis=2)
    if samples.shape[2] == 4:
        return cv2.cvtColor(samples, cv2.COLOR_BGRA2RGB)
    if samples.shape[2] == 3:
        return cv2.cvtColor(samples, cv2.COLOR_BGR2RGB)
    raise KeyframeError(f"unsupported PNG layout with {samples.shape[2]} channels", path=path)


def read_png(path: PathArg) -> np.ndarray:
    """A PNG (8- or 16-bit; grey, RGB or with alpha) as float32 RGB in [0, 1], H×W×3."""
    return to_float(read_png_samples(path))


def read_mask_png(path: PathArg) -> np.ndarray:
    """A mask PNG as float32 H×W in [0, 1]; a colour file is reduced to its luma."""
    path = Path(path)
    samples = _decode(_read_bytes(path), path)
    if samples.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if samples.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        samples = cv2.cvtColor(samples, code)
    return to_float(samples)


def _read_bytes(path: Path) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise KeyframeError("file not found", path=path) from exc
    except OSError as exc:
        raise KeyframeError(f"cannot read the file: {exc.strerror or exc}", path=path) from exc


def _decode(data: np.ndarray, path: Path) -> np.ndarray:
    if data[: len(_PNG_SIGNATURE)].tobytes() != _PNG_SIGNATURE:
        raise KeyframeError("not a PNG file (empty, or another format saved with a .png name)", path=path)
    samples = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if samples is None:
        raise KeyframeError("not a readable PNG image (truncated or corrupt)", path=path)
    if samples.dtype not in (np.uint8, np.uint16):
        raise KeyframeError(f"unsupported sample type {samples.dtype}; save as 8- or 16-bit", path=path)
    return samples
