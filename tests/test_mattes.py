"""Matte sources against synthetic screen shots whose true matte and composite are known.

Quality is a number: the composite ``alpha * F + (1 - alpha) * plate`` with the source's matte and
foreground, against the shot's ground-truth composite (PSNR), the matte against the true coverage,
and the documented guarantees (the solid inside is the source bit for bit; no screen colour left
at the edge; frame k's matte is frame k's).
"""

from __future__ import annotations

import importlib.metadata
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from studio_nova.config import load_settings
from studio_nova.errors import (
    ConfigError,
    EditRequestError,
    MediaError,
    PropagationError,
)
from studio_nova.footage.greenscreen import make_greenscreen
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import probe
from studio_nova.plugin_api.mattes import Matte, MatteContext, check_matte
from studio_nova.testing.tiny_sam2 import build_tiny_sam2
from studio_nova_plugins.mattes.alpha import AlphaMatte
from studio_nova_plugins.mattes.chroma import ChromaKeyMatte, key, parse_params
from studio_nova_plugins.mattes.file import FileMatte
from studio_nova_plugins.mattes.segmentation import SegmentationMatte

N, W, H = 12, 320, 180


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def composite(matte: Matte, plate: np.ndarray, frames: np.ndarray) -> np.ndarray:
    fore = matte.foreground if matte.foreground is not None else frames
    a = matte.alpha[..., None]
    return a * fore + (1 - a) * plate


def memory_context(frames: np.ndarray, first: int = 0, shot: str = "sh010") -> MatteContext:
    n, h, w = frames.shape[:3]
    media = MediaInfo(path=Path("/nonexistent/in-memory.mov"), width=w, height=h, rate=Fraction(25),
                      frame_count=first + n, pix_fmt="rgb48le", bit_depth=16, codec="none")
    return MatteContext(shot=shot, media=media, first_frame=first, frames=frames)


def file_context(path: Path, first: int, count: int, base_dir: Path | None = None) -> MatteContext:
    info = probe(path)
    frames = np.stack(list(read_frames(info, first, first + count - 1)))
    return MatteContext(shot="sh010", media=info, first_frame=first, frames=frames, base_dir=base_dir)


@pytest.fixture(scope="module")
def green():
    return make_greenscreen(N, W, H, seed=3)


@pytest.fixture(scope="module")
def green_matte(green):
    frames = green.frames(np.uint16)
    context = memory_context(frames)
    return frames, check_matte(ChromaKeyMatte().mattes(context), context, "chroma")


# --- entry points ------------------------------------------------------------------------------


def test_every_first_party_matte_source_is_registered_and_loads():
    found = {ep.name: ep.load() for ep in importlib.metadata.entry_points(group="studio_nova.mattes")}
    assert {"alpha", "file", "chroma", "segmentation"} <= set(found)
    for name in ("alpha", "file", "chroma", "segmentation"):
        assert found[name].name == name


# --- chroma -----------------------------------------------------------------------------------


def test_chroma_composite_matches_the_truth(green, green_matte):
    frames, matte = green_matte
    assert psnr(composite(matte, green.plate, frames / 65535), green.truth) >= 38.0
    band = (green.alpha > 0) & (green.alpha < 1)
    assert np.abs(matte.alpha - green.alpha)[band].mean() < 0.12
    assert np.abs(matte.alpha - green.alpha)[green.alpha == 0].max() < 0.2
    assert (matte.alpha[green.alpha == 0] > 0).mean() < 0.005  # a clean screen keys to 0


def test_chroma_leaves_the_solid_subject_bit_for_bit(green, green_matte):
    frames, matte = green_matte
    inside = green.interior(3)
    source = to_float(frames)  # the library's one conversion: bit for bit means this
    assert (matte.alpha[inside] == 1.0).all()
    assert np.array_equal(matte.foreground[inside], source[inside])


def test_chroma_edges_are_soft_and_carry_no_screen_colour(green, green_matte):
    _, matte = green_matte
    band = (green.alpha > 0.05) & (green.alpha < 0.95)
    # Motion-blurred edges stay semi-transparent (no binary matte).
    assert ((matte.alpha[band] > 0.02) & (matte.alpha[band] < 0.98)).mean() > 0.5
    f = matte.foreground[band]
    green_excess = f[:, 1] - np.maximum(f[:, 0], f[:, 2])
    assert np.maximum(green_excess, 0).mean() < 0.01
    # The estimated screen behind the subject follows the uneven light.
    assert np.abs(matte.background - green.screen)[green.alpha == 0].mean() < 0.01


def test_chroma_matte_is_steady_on_a_still_subject():
    still = make_greenscreen(8, W, H, seed=5, static=True)
    alpha, *_ = key(still.frames(np.uint16), parse_params({}))
    band = (still.alpha[0] > 0) & (still.alpha[0] < 1)
    flicker = alpha.std(axis=0)
    assert flicker[band].mean() < 0.04  # only sensor noise changes between frames
    assert flicker[still.alpha[0] == 0].max() < 0.05


def test_chroma_keys_a_blue_screen():
    blue = make_greenscreen(8, W, H, seed=4, screen="blue")
    frames = blue.frames(np.uint16)
    matte = ChromaKeyMatte(screen="blue").mattes(memory_context(frames))
    assert psnr(composite(matte, blue.plate, frames / 65535), blue.truth) >= 38.0
    auto = ChromaKeyMatte(screen="auto").mattes(memory_context(frames))
    assert auto.info["key_channel"] == "b"


def test_chroma_holds_up_on_a_harder_shot():
    """Heavy grain, deep vignetting, a dark shadow and fine hair strands."""
    hard = make_greenscreen(8, W, H, seed=2, noise=0.03, vignetting=0.6, wrinkles=0.1, shadow=0.45, hair=True)
    frames = hard.frames(np.uint16)
    matte = ChromaKeyMatte().mattes(memory_context(frames))
    assert psnr(composite(matte, hard.plate, frames / 65535), hard.truth) >= 34.0
    assert (matte.alpha[hard.alpha == 0] > 0).mean() < 0.02
    inside = hard.interior(3)
    assert (matte.alpha[inside] == 1.0).mean() > 0.999


def test_chroma_through_a_prores_round_trip(green, tmp_path):
    context = file_context(green.write_source(tmp_path / "source.mov"), 0, N)
    matte = ChromaKeyMatte().mattes(context)
    frames = context.frames.astype(np.float32) / 65535
    assert psnr(composite(matte, green.plate, frames), green.truth) >= 38.0


def test_chroma_keeps_a_frame_without_screen_opaque_and_keys_bare_screen_to_zero(green):
    close_up = np.clip(green.foreground[:2] + green.noise[:2], 0, 1)  # the subject colour fills the frame
    close_up[..., 1] = np.minimum(close_up[..., 1], np.maximum(close_up[..., 0], close_up[..., 2]))
    alpha, _, fore, info = key(close_up, parse_params({}))
    assert (alpha == 1.0).all() and np.array_equal(fore, close_up)
    assert "no screen" in info["warning"]
    alpha, *_ = key(np.clip(green.screen[:2] + green.noise[:2], 0, 1), parse_params({}))
    assert (alpha > 0).mean() < 0.005 and alpha.max() < 0.15  # auto clip_black: 99.7 % of screen


def test_chroma_params_are_validated_by_name():
    with pytest.raises(EditRequestError, match="screen"):
        ChromaKeyMatte(screen="red")
    with pytest.raises(EditRequestError, match="screen"):
        ChromaKeyMatte(screen=[0.5, 0.5, 0.5])
    with pytest.raises(EditRequestError, match="clip_white"):
        ChromaKeyMatte(clip_black=0.5, clip_white=0.5)
    with pytest.raises(EditRequestError, match="bogus"):
        ChromaKeyMatte(bogus=1)
    with pytest.raises(EditRequestError, match="temporal"):
        ChromaKeyMatte(temporal=1.5)
    assert ChromaKeyMatte(screen="#1fa045").settings.screen == pytest.approx((31 / 255, 160 / 255, 69 / 255))


def test_chroma_choke_and_blur_shrink_and_soften(green, green_matte):
    frames, matte = green_matte
    choked = ChromaKeyMatte(choke=2, blur=1.0).mattes(memory_context(frames))
    assert choked.alpha.sum() < 0.97 * matte.alpha.sum()


# --- alpha ------------------------------------------------------------------------------------


def test_alpha_source_reads_the_files_own_alpha_frame_exact(green, tmp_path):
    path = green.write_with_alpha(tmp_path / "element.mov")
    context = file_context(path, 5, 4)  # a chunk that starts mid-file
    matte = check_matte(AlphaMatte().mattes(context), context, "alpha")
    assert np.abs(matte.alpha - green.alpha[5:9]).max() < 2e-3
    out = composite(matte, green.plate[5:9], context.frames / 65535)
    assert psnr(out, green.truth[5:9]) >= 38.0


@pytest.mark.parametrize(("codec", "pix_fmt", "tolerance"), [("png", "rgba64be", 1e-4), ("qtrle", "argb", 8e-3)])
def test_alpha_source_reads_png_and_animation_quicktimes(green, tmp_path, codec, pix_fmt, tolerance):
    import subprocess

    from studio_nova.media.ffmpeg_bin import ffmpeg_exe
    from studio_nova.media.frames import from_float

    rgba = np.concatenate([np.clip(green.foreground[:4] + green.noise[:4], 0, 1), green.alpha[:4, ..., None]], -1)
    raw = tmp_path / "rgba.raw"
    from_float(rgba, np.uint16).tofile(raw)
    path = tmp_path / f"element_{codec}.mov"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgba64le", "-s", f"{W}x{H}", "-r", "25",
         "-i", str(raw), "-c:v", codec, "-pix_fmt", pix_fmt, str(path)],
        check=True,
    )
    matte = AlphaMatte().mattes(file_context(path, 1, 3))
    assert np.abs(matte.alpha - green.alpha[1:4]).max() < tolerance


def test_alpha_source_refuses_a_file_without_alpha_naming_it(green, tmp_path):
    path = green.write_source(tmp_path / "no_alpha.mov")
    with pytest.raises(EditRequestError, match="alpha channel") as caught:
        AlphaMatte().mattes(file_context(path, 0, 2))
    assert caught.value.path == probe(path).path


def test_alpha_source_unpremultiplies_when_told(green, tmp_path):
    path = green.write_with_alpha(tmp_path / "element.mkv", codec="ffv1")
    context = file_context(path, 0, 3)
    straight = AlphaMatte().mattes(context)
    premultiplied = AlphaMatte(premultiplied=True).mattes(context)
    edge = (straight.alpha > 0.2) & (straight.alpha < 0.8)
    ratio = premultiplied.foreground[edge] / np.maximum(straight.foreground[edge], 1e-3)
    assert np.median(ratio) > 1.2
    with pytest.raises(EditRequestError, match="premultiplied"):
        AlphaMatte(premultiplied="yes")


# --- file -------------------------------------------------------------------------------------


def test_file_source_reads_a_matte_video_frame_exact(green, tmp_path):
    green.write_matte(tmp_path / "matte.mkv")
    context = memory_context(green.frames(np.uint16)[4:10], first=4)
    context = MatteContext(shot="sh010", media=context.media, first_frame=4, frames=context.frames, base_dir=tmp_path)
    matte = check_matte(FileMatte(path="matte.mkv").mattes(context), context, "file")
    # Every frame's matte is distinct (the subject moves), so an off-by-one would show.
    errors = [[np.abs(matte.alpha[i] - green.alpha[j]).max() for j in range(N)] for i in range(6)]
    assert [int(np.argmin(row)) for row in errors] == list(range(4, 10))
    assert max(row[4 + i] for i, row in enumerate(errors)) < 1e-4
    out = composite(matte, green.plate[4:10], context.frames / 65535)
    # No foreground given: the composite keeps the screen in the edges, yet stays close.
    assert psnr(out, green.truth[4:10]) >= 30.0


def test_file_source_reads_a_png_sequence_with_an_offset_and_inverts(green, tmp_path):
    green.write_matte(tmp_path / "seq" / "m.%04d.png", start=1001)
    frames = green.frames(np.uint16)[:3]
    context = MatteContext(shot="sh010", media=memory_context(frames).media, first_frame=0, frames=frames,
                           base_dir=tmp_path)
    matte = FileMatte(path="seq/m.%04d.png", offset=-1001).mattes(context)
    assert np.abs(matte.alpha - green.alpha[:3]).max() < 1e-4
    inverted = FileMatte(path=str(tmp_path / "seq"), invert=True).mattes(context)
    assert np.abs(inverted.alpha - (1 - green.alpha[:3])).max() < 1e-4


def test_file_source_errors_name_the_file_and_frames(green, tmp_path):
    green.write_matte(tmp_path / "matte.mkv")
    frames = green.frames(np.uint16)
    base = memory_context(frames[:4]).media
    context = MatteContext(shot="sh010", media=base, first_frame=10, frames=frames[:4], base_dir=tmp_path)
    with pytest.raises(MediaError, match=r"need matte frames 10\.\.13.*has 12 frames") as caught:
        FileMatte(path="matte.mkv").mattes(context)
    assert caught.value.path == (tmp_path / "matte.mkv")
    with pytest.raises(EditRequestError, match="does not exist"):
        FileMatte(path="missing.mkv").mattes(context)
    small = make_greenscreen(2, 64, 48, seed=1)
    small.write_matte(tmp_path / "small.mkv")
    context = MatteContext(shot="sh010", media=base, first_frame=0, frames=frames[:2], base_dir=tmp_path)
    with pytest.raises(MediaError, match="64x48 but the source is 320x180"):
        FileMatte(path="small.mkv").mattes(context)
    with pytest.raises(MediaError, match="no alpha channel"):
        FileMatte(path="matte.mkv", channel="alpha").mattes(context)
    with pytest.raises(EditRequestError, match="channel"):
        FileMatte(path="matte.mkv", channel="hue")
    with pytest.raises(EditRequestError, match="path"):
        FileMatte()


def test_file_source_reads_the_alpha_of_an_rgba_video(green, tmp_path):
    green.write_with_alpha(tmp_path / "element.mkv", codec="ffv1")
    frames = green.frames(np.uint16)[:3]
    context = MatteContext(shot="sh010", media=memory_context(frames).media, first_frame=0, frames=frames,
                           base_dir=tmp_path)
    matte = FileMatte(path="element.mkv", channel="alpha").mattes(context)
    assert np.abs(matte.alpha - green.alpha[:3]).max() < 1e-4


# --- segmentation -----------------------------------------------------------------------------


def test_segmentation_is_not_ready_without_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIO_NOVA_SEGMENTATION_DIR", raising=False)
    ready, reason = SegmentationMatte.readiness(load_settings())
    assert not ready and "STUDIO_NOVA_SEGMENTATION_DIR" in reason
    monkeypatch.setenv("STUDIO_NOVA_SEGMENTATION_DIR", str(tmp_path / "nowhere"))
    ready, reason = SegmentationMatte.readiness(load_settings())
    assert not ready and "does not exist" in reason
    matte = SegmentationMatte(points=[[10, 10]])
    with pytest.raises(ConfigError, match="STUDIO_NOVA_SEGMENTATION_DIR"):  # the context's settings
        matte.mattes(memory_context(np.zeros((2, 32, 32, 3), np.uint8)))


def test_segmentation_prompt_params_are_validated():
    with pytest.raises(EditRequestError, match="points or a box"):
        SegmentationMatte()
    with pytest.raises(EditRequestError, match="labels"):
        SegmentationMatte(points=[[1, 2], [3, 4]], labels=[1])
    with pytest.raises(EditRequestError, match="box"):
        SegmentationMatte(box=[10, 10, 5, 20])


def test_segmentation_tracks_chunks_in_order_with_a_tiny_model(tmp_path):
    pytest.importorskip("transformers")
    folder = build_tiny_sam2(tmp_path / "sam2")
    frames = make_greenscreen(6, 64, 48, seed=1).frames(np.uint8)
    media = memory_context(frames).media
    source = SegmentationMatte(model_dir=str(folder), points=[[32, 20]], box=[20, 8, 44, 40])
    first = MatteContext(shot="sh010", media=media, first_frame=0, frames=frames[:4])
    matte = check_matte(source.mattes(first), first, "segmentation")
    assert matte.info["prompt_frame"] == 0
    again = SegmentationMatte(model_dir=str(folder), points=[[32, 20]], box=[20, 8, 44, 40]).mattes(first)
    assert np.array_equal(again.alpha, matte.alpha)  # same request, same matte
    second = MatteContext(shot="sh010", media=media, first_frame=3, frames=frames[3:])
    check_matte(source.mattes(second), second, "segmentation")  # prompted by frame 3's mask
    out_of_order = SegmentationMatte(model_dir=str(folder), points=[[32, 20]], frame=0)
    with pytest.raises(PropagationError, match="in order"):
        out_of_order.mattes(second)
    with pytest.raises(EditRequestError, match="outside"):
        SegmentationMatte(model_dir=str(folder), points=[[99, 20]]).mattes(first)


def test_file_source_reads_float_exr_mattes(green, tmp_path):
    import subprocess

    from studio_nova.media.ffmpeg_bin import ffmpeg_exe

    green.write_matte(tmp_path / "png" / "m.%04d.png")
    (tmp_path / "exr").mkdir()
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "png" / "m.%04d.png"), "-frames:v", "3",
         "-pix_fmt", "gbrpf32le", "-c:v", "exr", str(tmp_path / "exr" / "m.%04d.exr")],
        check=True,
    )
    frames = green.frames(np.uint16)[:3]
    context = MatteContext(shot="sh010", media=memory_context(frames).media, first_frame=0, frames=frames,
                           base_dir=tmp_path)
    matte = FileMatte(path="exr").mattes(context)
    assert np.abs(matte.alpha - green.alpha[:3]).max() < 1e-3
