"""Bad media and failed writes against real ffmpeg: every error is a sentence about the file.

Each damaged file is made here (a ProRes .mov and a fast-start .mp4 cut at several points, a
Matroska file cut short, garbage, nothing, a PNG / JPEG / text file / ZIP archive with a movie's
name, a movie whose frames are damaged) and each message must name the file, say what is wrong
with it and what to do, and hold none of ffmpeg's own output, which goes to the log instead.
Writes fail for real too: a disk that is full (a tiny tmpfs, where one can be mounted, and
ffmpeg writing to /dev/full) and a folder that may not be written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from studio_nova.errors import DecodeError, EncodeError, MediaError
from studio_nova.media.decode import read_frames
from studio_nova.media.encode import VideoWriter, make_proxy
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.ffmpeg_errors import writing_problem
from studio_nova.media.probe import probe

FRAMES = 30
WHAT_TO_DO = ("copy", "export", "link", "relink", "unpack", "fix", "free", "choose", "transcode")
# What ffmpeg's own lines look like: `[mov @ 0x55d…]`, `[in#0/mov …]`, its stock phrases.
NOISE = re.compile(
    r"0x[0-9a-f]{4,}|\[\w+(#\d+)?(/[\w,]+)?\s*@|\bin#0\b|Error opening|Invalid data found when processing"
    r"|Conversion failed|exit status|Terminating thread|moov atom not found|partial file",
    re.IGNORECASE,
)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def noisy_picture(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def write(path: Path, codec: str = "prores_hq", count: int = FRAMES) -> Path:
    with VideoWriter(path, width=64, height=48, rate=Fraction(25), codec=codec, input_dtype=np.uint8) as writer:
        for frame in noisy_picture(count):
            writer.write(frame)
    return path


def cut(source: Path, target: Path, keep: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def assert_sentence(error: Exception, path: Path, *wrong: str) -> str:
    """The message names `path`, says one of `wrong`, says what to do, and is not ffmpeg's."""
    message = str(error)
    assert str(path) in message, f"the file is not named: {message}"
    said = message.replace(str(path), "").lower()
    assert any(word in said for word in wrong), f"does not say what is wrong ({wrong}): {message}"
    assert any(word in said for word in WHAT_TO_DO), f"does not say what to do: {message}"
    assert not NOISE.search(message), f"ffmpeg's own output in the message: {message}"
    return message


@pytest.fixture(scope="module")
def movies(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("whole")
    mp4 = folder / "web.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", str(FRAMES), "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-g", "5", "-movflags", "+faststart", str(mp4))  # fmt: skip
    return {"mov": write(folder / "master.mov"), "mp4": mp4, "mkv": write(folder / "take.mkv", "ffv1")}


# --- files that are not what they say -----------------------------------------------------


@pytest.mark.parametrize("keep", [0.001, 0.05, 0.3, 0.6, 0.9, 0.99, 0.999])
def test_a_truncated_prores_mov_is_reported_truncated(movies, tmp_path, keep):
    path = cut(movies["mov"], tmp_path / "A001_cut.mov", keep)
    with pytest.raises(MediaError) as caught:
        probe(path)
    assert_sentence(caught.value, path, "truncated")


@pytest.mark.parametrize("keep", [0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.999])
def test_a_truncated_faststart_mp4_says_where_decoding_stops_not_that_the_range_is_wrong(movies, tmp_path, keep):
    path = cut(movies["mp4"], tmp_path / "A002_cut.mp4", keep)
    with pytest.raises(MediaError) as caught:
        probe(path)
    message = assert_sentence(caught.value, path, "truncated")
    if "decoding stops" in message:  # the index is whole, the frames are not
        stopped = caught.value.frame
        assert 0 <= stopped < FRAMES and f"decoding stops at frame {stopped} of the {FRAMES}" in message


def test_the_frame_a_truncated_mp4_stops_at_moves_with_the_cut(movies, tmp_path):
    stops = []
    for keep in (0.5, 0.6, 0.8, 0.95):
        with pytest.raises(MediaError) as caught:
            probe(cut(movies["mp4"], tmp_path / f"cut_{keep}.mp4", keep))
        stops.append(caught.value.frame)
    assert stops == sorted(stops) and stops[0] < stops[-1] < FRAMES


def test_a_file_cut_short_after_it_was_probed_fails_at_decode_naming_the_truncation(movies, tmp_path):
    path = tmp_path / "A003_growing.mp4"
    shutil.copy(movies["mp4"], path)
    info = probe(path)
    cut(movies["mp4"], path, 0.5)  # e.g. a copy over it was interrupted
    with pytest.raises(MediaError) as caught:
        list(read_frames(info, 0, FRAMES - 1))
    assert_sentence(caught.value, path, "truncated")
    assert "source range" not in str(caught.value)


@pytest.mark.parametrize("keep", [0.3, 0.7])
def test_a_matroska_file_cut_short_is_truncated_not_short(movies, tmp_path, keep):
    path = cut(movies["mkv"], tmp_path / "A004_cut.mkv", keep)
    with pytest.raises(MediaError) as caught:
        probe(path)
    message = assert_sentence(caught.value, path, "truncated")
    assert f"of the {FRAMES} its header promises" in message


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(8192))


def _png(path: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", "color=red:size=32x24", "-frames:v", "1", "-f", "image2", "-c:v", "png", str(path))


def _jpeg(path: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", "color=red:size=32x24", "-frames:v", "1", "-f", "image2", "-c:v", "mjpeg", str(path))


def _text(path: Path) -> None:
    path.write_text("Reel 3: make the sky bluer.\n" * 40)


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("A005.mov", b"\0" * 4096)


def _sound(path: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.3", "-c:a", "pcm_s16le", str(path))


@pytest.mark.parametrize(
    ("name", "make", "wrong"),
    [
        ("A005_garbage.mov", _garbage, ("damaged", "not a video")),
        ("A006_empty.mov", lambda p: p.write_bytes(b""), ("empty",)),
        ("A007_frame.mov", _png, ("png image",)),
        ("A008_frame.mp4", _jpeg, ("jpeg image",)),
        ("A009_notes.mov", _text, ("text file",)),
        ("A010_delivery.mov", _zip, ("zip archive",)),
        ("A011_sound.mov", _sound, ("no video stream",)),
    ],
)
def test_a_file_that_is_not_a_video_says_what_it_is(tmp_path, name, make, wrong):
    path = tmp_path / name
    make(path)
    with pytest.raises(MediaError) as caught:
        probe(path)
    assert_sentence(caught.value, path, *wrong)
    assert caught.value.path == path


def test_a_still_with_its_own_extension_is_still_read(tmp_path):
    path = tmp_path / "plate.png"
    _png(path)
    info = probe(path)
    assert (info.frame_count, info.is_image, info.width) == (1, True, 32)
    assert next(read_frames(info, 0, 0)).shape == (24, 32, 3)


def test_damaged_frames_are_a_sentence_and_ffmpegs_words_go_to_the_log(movies, tmp_path, caplog):
    path = tmp_path / "A012_damaged.mov"
    shutil.copy(movies["mov"], path)
    info = probe(path)
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(size // 3)
        handle.write(b"\0" * (size // 3))
    caplog.set_level(logging.INFO, logger="studio_nova.media.ffmpeg")
    with pytest.raises(DecodeError) as caught:
        list(read_frames(info, 0, FRAMES - 1))
    assert_sentence(caught.value, path, "damaged")
    assert 0 < caught.value.frame < FRAMES
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "studio_nova.media.ffmpeg")
    assert str(path) in logged and "invalid" in logged.lower()  # ffmpeg's own words, in the log


def test_a_failed_probe_logs_ffmpegs_output(tmp_path, caplog):
    path = tmp_path / "A013_garbage.mov"
    _garbage(path)
    caplog.set_level(logging.INFO, logger="studio_nova.media.ffmpeg")
    with pytest.raises(MediaError):
        probe(path)
    logged = [r.getMessage() for r in caplog.records if r.name == "studio_nova.media.ffmpeg"]
    assert any(str(path) in text and "Invalid data found" in text for text in logged)


# --- writes that fail -----------------------------------------------------------------------


def test_ffmpegs_disk_full_becomes_a_sentence_naming_the_folder(tmp_path):
    """ffmpeg writing to /dev/full, which always answers "No space left on device"."""
    run = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-f", "lavfi", "-i", "color=size=64x48",
         "-frames:v", "5", "-c:v", "prores_ks", "-f", "mov", "/dev/full"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    target = tmp_path / "renders" / "A014_v001.mov"
    message = writing_problem(target, run.stderr.decode())
    assert message is not None and "disk is full" in message and str(target.parent) in message
    assert not NOISE.search(message)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, where this process may mount one (root with CAP_SYS_ADMIN); else skip."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tiny tmpfs needs root")
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_render_that_fills_the_disk_says_so_and_leaves_nothing(full_disk):
    target = full_disk / "A015_v001.mov"
    with pytest.raises(EncodeError) as caught:
        with VideoWriter(target, width=128, height=72, rate=Fraction(25), codec="prores_hq",
                         input_dtype=np.uint8) as writer:  # fmt: skip
            for frame in noisy_picture(200, 128, 72):
                writer.write(frame)
    message = assert_sentence(caught.value, target, "disk is full")
    assert str(full_disk) in message.replace(str(target), "")
    assert list(full_disk.iterdir()) == []


def test_a_proxy_that_fills_the_disk_says_so(movies, full_disk):
    target = full_disk / "A016_proxy.mp4"
    (full_disk / "ballast").write_bytes(b"\0" * (60 * 1024))
    with pytest.raises(EncodeError) as caught:
        make_proxy(movies["mov"], target)
    assert_sentence(caught.value, target, "disk is full")
    assert sorted(p.name for p in full_disk.iterdir()) == ["ballast"]


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    # root writes anywhere permissions allow; sysfs refuses new files even to root
    folder = Path("/sys/kernel")
    if not folder.is_dir():
        pytest.skip("no folder root may not write to")
    return folder


def test_a_folder_that_may_not_be_written_is_permission_denied(tmp_path):
    folder = _unwritable_folder(tmp_path)
    target = folder / "A017_v001.mov"
    with pytest.raises(EncodeError) as caught:
        write(target, count=3)
    message = assert_sentence(caught.value, target, "permission denied")
    assert str(folder) in message.replace(str(target), "")
    assert not target.exists()
