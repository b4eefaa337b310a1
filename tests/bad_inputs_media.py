"""Tiny media files, good and bad, made on the spot for the bad-input and fault-injection tests.

Good footage goes through the project's own writer (`studio_nova.media.encode.VideoWriter`); files
a camera, an NLE or a broken copy would leave behind (audio only, variable frame rate, truncated,
fast-start MP4, a still, an archive) come from the bundled ffmpeg or plain bytes. Everything is a
few frames at a few dozen pixels so a case costs well under a second to make.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from studio_nova.media.encode import VideoWriter

RATE = Fraction(25)


def frames(count: int, width: int, height: int, *, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """`count` RGB frames: a smooth gradient with a red square moving across it and a little noise,
    deterministic per `seed`; uint8, or uint16 using the full 16-bit range."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((count, height, width, 3), np.float32)
    for t in range(count):
        out[t, ..., 0] = 0.2 + 0.5 * x / max(width - 1, 1)
        out[t, ..., 1] = 0.3 + 0.4 * y / max(height - 1, 1)
        out[t, ..., 2] = 0.5 - 0.3 * x / max(width - 1, 1)
        side = max(1, min(width, height) // 3)
        left = (t * max(1, width // 16)) % max(1, width - side + 1)
        top = max(0, (height - side) // 2)
        out[t, top : top + side, left : left + side] = (0.85, 0.1, 0.1)
    out += rng.normal(0.0, 0.01, out.shape).astype(np.float32)
    scale = 65535 if dtype == np.uint16 else 255
    return np.rint(np.clip(out, 0.0, 1.0) * scale).astype(dtype)


def write_movie(
    path: Path,
    count: int,
    width: int = 64,
    height: int = 48,
    *,
    codec: str = "prores_hq",
    dtype: type = np.uint8,
    rate: Fraction = RATE,
    timecode: str | None = None,
    seed: int = 0,
) -> Path:
    """A movie of `frames(count, width, height)` through the project's writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, width=width, height=height, rate=rate, codec=codec, input_dtype=dtype,
                     timecode=timecode) as writer:
        for frame in frames(count, width, height, dtype=dtype, seed=seed):
            writer.write(frame)
    return path


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly; a failure here is a broken test set-up, said loudly."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    run = subprocess.run(command, capture_output=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"test media: {' '.join(command)} failed: {run.stderr.decode(errors='replace')}")


def audio_only(path: Path) -> Path:
    """A QuickTime file holding half a second of a sine tone and no video stream."""
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "pcm_s16le", str(path))
    return path


def still_png(path: Path, width: int = 64, height: int = 48) -> Path:
    """One PNG image (a still, whatever the file is called)."""
    ffmpeg("-f", "lavfi", "-i", f"color=c=red:size={width}x{height}", "-frames:v", "1", "-f", "image2",
           "-c:v", "png", str(path))
    return path


def faststart_mp4(path: Path, count: int, width: int = 64, height: int = 48) -> Path:
    """An H.264 MP4 with its index (moov) before the frames, as web and camera files are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=25", "-frames:v", str(count),
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-movflags", "+faststart", str(path))
    return path


#: Frames of `vfr_movie` and the two rates it switches between (first half, second half).
VFR_FRAMES, VFR_RATES = 30, (25, 50)


def vfr_movie(path: Path, width: int = 64, height: int = 48) -> Path:
    """A variable-frame-rate file, as phones and screen recorders write them: the first 15 frames
    1/25 s apart, the last 15 frames 1/50 s apart (timestamps kept as they are)."""
    half = VFR_FRAMES // 2
    slow, fast = VFR_RATES
    pts = f"if(lt(N,{half}),N/{slow},{half}/{slow}+(N-{half})/{fast})/TB"
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate={fast}", "-frames:v", str(VFR_FRAMES),
           "-vf", f"setpts='{pts}'", "-fps_mode", "passthrough", "-enc_time_base", "1/1000",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-video_track_timescale", "1000", str(path))
    return path


def truncated(path: Path, source: Path, keep: float) -> Path:
    """The first `keep` share of `source`'s bytes, as an interrupted copy leaves a file."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def text_file(path: Path) -> Path:
    path.write_text("This is the editor's note, not a movie.\n" * 20)
    return path


def zip_file(path: Path, inside: Path) -> Path:
    """A zip archive (a delivery nobody unpacked) holding `inside`."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(inside, inside.name)
    return path


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under `folders` with the sha256 of its bytes (and its mode, so a chmod shows)."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except PermissionError:  # unreadable on purpose: size and time stand in for bytes
                    digest = f"unreadable size={stat.st_size} mtime={stat.st_mtime_ns}"
                found[str(path)] = f"{digest} mode={stat.st_mode:o}"
    return found
