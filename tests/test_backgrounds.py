"""Background sources (`still`, `plate`, `generator`) against footage made here with a known truth.

Plates carry their frame number as a flat grey level (8 + 4·i of 255), so decoding an offset and
reading the level back says exactly which plate frame it showed; moving plates and stills carry a
texture or a soft blob moving by a known number of pixels per frame, measured back with phase
correlation and centroids. The generator runs its whole path on tiny random models.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from studio_nova.errors import ConfigError, EditRequestError
from studio_nova.media.encode import VideoWriter
from studio_nova.plugin_api.backgrounds import BackgroundContext, check_background
from studio_nova.plugin_api.registry import BACKGROUNDS, load_plugin
from studio_nova_plugins.backgrounds.generator import GeneratedBackground
from studio_nova_plugins.backgrounds.plate import PlateBackground
from studio_nova_plugins.backgrounds.still import StillBackground

# --- footage ---------------------------------------------------------------------------------


def level(index: int) -> int:
    return 8 + 4 * index


def read_levels(frames: np.ndarray) -> list[int]:
    """Plate frame numbers back from flat-level frames (the centre pixel of the green channel)."""
    h, w = frames.shape[1:3]
    return [int(round((float(f[h // 2, w // 2, 1]) * 255.0 - 8.0) / 4.0)) for f in frames]


def write_clip(path: Path, frames: list[np.ndarray], rate: Fraction = Fraction(25), codec: str = "ffv1") -> Path:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, width=width, height=height, rate=rate, codec=codec, input_dtype=frames[0].dtype) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def level_plate(path: Path, count: int, rate: Fraction = Fraction(25), width: int = 64, height: int = 36) -> Path:
    frames = [np.full((height, width, 3), level(i), np.uint8) for i in range(count)]
    return write_clip(path, frames, rate)


def texture(height: int, width: int, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), sigma)
    field = (field - field.min()) / (field.max() - field.min())
    return np.repeat(field[:, :, None], 3, axis=2)


def blob(height: int, width: int, cx: float, cy: float, sigma: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] + 0.5
    image = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    return np.repeat(image[:, :, None], 3, axis=2)


def moments(frame: np.ndarray) -> tuple[float, float, float]:
    """(centroid x, centroid y, RMS radius per axis) of a bright blob on black."""
    g = frame[:, :, 1].astype(np.float64)
    y, x = np.mgrid[0 : g.shape[0], 0 : g.shape[1]] + 0.5
    mass = g.sum()
    cx, cy = (g * x).sum() / mass, (g * y).sum() / mass
    return cx, cy, float(np.sqrt((g * ((x - cx) ** 2 + (y - cy) ** 2)).sum() / mass / 2))


def save_png16(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(np.rint(image * 65535).astype(np.uint16), cv2.COLOR_RGB2BGR))
    return path


def context(
    tmp_path: Path, width: int = 64, height: int = 36, frames: int = 30, rate: Fraction = Fraction(25), **kw
) -> BackgroundContext:
    return BackgroundContext(
        shot="sh010", width=width, height=height, rate=rate, frame_count=frames, base_dir=tmp_path, **kw
    )


def pingpong(length: int, count: int) -> list[int]:
    """The back-and-forth walk, built step by step (independent of the plugin's modular formula)."""
    out, index, step = [], 0, 1
    for _ in range(count):
        out.append(index)
        if length > 1 and not 0 <= index + step < length:
            step = -step
        index = index + step if length > 1 else 0
    return out


# --- plate: which frame ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plate40(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return level_plate(tmp_path_factory.mktemp("plates") / "levels.mkv", 40)


def test_when_start_is_given_then_shot_frame_i_shows_plate_frame_start_plus_i(tmp_path, plate40):
    source = PlateBackground(video=str(plate40), start=5)
    frames = source.frames(context(tmp_path, frames=20), list(range(20)))
    assert read_levels(frames) == list(range(5, 25))


@pytest.mark.parametrize(
    "loop, expected",
    [
        ("loop", [2 + i % 8 for i in range(30)]),
        ("pingpong", [2 + i for i in pingpong(8, 30)]),
        ("hold", [min(2 + i, 9) for i in range(30)]),
    ],
)
def test_when_the_shot_outlasts_start_to_end_then_loop_says_what_follows(tmp_path, plate40, loop, expected):
    source = PlateBackground(video=str(plate40), start=2, end=9, loop=loop)
    frames = source.frames(context(tmp_path, frames=30), list(range(30)))
    assert read_levels(frames) == expected


def test_when_loop_is_error_and_the_plate_is_short_then_the_error_names_file_and_numbers(tmp_path, plate40):
    source = PlateBackground(video=str(plate40), start=2, end=9, loop="error")
    with pytest.raises(EditRequestError, match=r"needs 30 plate frames.*2\.\.9 are only 8") as caught:
        source.frames(context(tmp_path, frames=30), [0])
    assert "levels.mkv" in str(caught.value)
    # Long enough: no error, frame for frame.
    assert read_levels(source.frames(context(tmp_path, frames=8), list(range(8)))) == list(range(2, 10))


@pytest.mark.parametrize(
    "plate_rate, shot_rate, expected",
    [(Fraction(50), Fraction(25), [0, 2, 4, 6, 8, 10]), (Fraction(25), Fraction(50), [0, 1, 1, 2, 2, 3])],
)
def test_when_retime_is_time_then_the_plate_frame_nearest_the_same_moment_is_shown(
    tmp_path, plate_rate, shot_rate, expected
):
    plate = level_plate(tmp_path / f"rate{plate_rate}.mkv", 12, rate=plate_rate)
    timed = PlateBackground(video=str(plate), retime="time").frames(context(tmp_path, rate=shot_rate), list(range(6)))
    framed = PlateBackground(video=str(plate)).frames(context(tmp_path, rate=shot_rate), list(range(6)))
    assert read_levels(timed) == expected
    assert read_levels(framed) == list(range(6))


def test_when_start_or_end_is_beyond_the_plate_then_the_error_names_the_file_and_frame_count(tmp_path, plate40):
    with pytest.raises(EditRequestError, match=r"start \(40\) is beyond the plate, which has 40 frames") as caught:
        PlateBackground(video=str(plate40), start=40).frames(context(tmp_path), [0])
    assert str(plate40) in str(caught.value)
    with pytest.raises(EditRequestError, match=r"end \(45\) is beyond the plate"):
        PlateBackground(video=str(plate40), end=45).frames(context(tmp_path), [0])


def test_when_the_plate_file_is_missing_then_the_error_names_param_and_file(tmp_path):
    with pytest.raises(EditRequestError, match="param video: does not exist") as caught:
        PlateBackground(video="plates/nowhere.mov").frames(context(tmp_path), [0])
    assert caught.value.path == tmp_path / "plates" / "nowhere.mov"
    with pytest.raises(EditRequestError, match="param video: does not exist"):
        PlateBackground(video=str(tmp_path / "absolute.mov"))  # absolute: checked at once


def test_when_chunks_overlap_then_shared_offsets_agree_exactly_and_keyframe_offsets_match(tmp_path, plate40):
    source = PlateBackground(video=str(plate40), loop="pingpong")
    ctx = context(tmp_path, frames=146)
    first, second = source.frames(ctx, list(range(0, 81))), source.frames(ctx, list(range(65, 146)))
    assert np.array_equal(first[65:], second[:16])
    sparse = source.frames(ctx, list(range(0, 146, 10)))
    dense = np.concatenate([first, second[16:]])
    assert np.array_equal(sparse, dense[::10])
    assert read_levels(dense) == pingpong(40, 146)


def test_when_the_plate_is_ten_bit_prores_then_frames_come_back_at_its_levels(tmp_path):
    frames = [np.full((36, 64, 3), level(i) * 257, np.uint16) for i in range(10)]
    plate = write_clip(tmp_path / "tenbit.mov", frames, codec="prores_hq")
    out = PlateBackground(video=str(plate), loop="hold").frames(context(tmp_path, frames=12), list(range(12)))
    assert read_levels(out) == [min(i, 9) for i in range(12)]
    assert np.abs(out[3] - level(3) / 255.0).max() < 2.0 / 1023  # within two 10-bit code values


# --- plate: the background moves with the plate -----------------------------------------------


def test_when_the_plate_moves_then_the_background_moves_with_it_at_the_framed_scale(tmp_path):
    # A texture sliding left by 4 plate pixels per frame; the shot is half the plate's size.
    wide = texture(128, 192 + 4 * 24, seed=1, sigma=1.5)
    frames = [np.rint(wide[:, 4 * i : 4 * i + 192] * 65535).astype(np.uint16) for i in range(24)]
    plate = write_clip(tmp_path / "moving.mkv", frames)
    out = PlateBackground(video=str(plate)).frames(context(tmp_path, width=96, height=64, frames=24), list(range(24)))
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64) for f in out]
    window = cv2.createHanningWindow((96, 64), cv2.CV_64F)
    shifts = np.array([cv2.phaseCorrelate(grey[k], grey[k + 1], window)[0] for k in range(23)])
    # Truth: 4 px/frame × 0.5 = 2 px/frame to the left, on every frame (phase correlation on
    # content that slides out of the window reads each pair within ~0.07 px).
    assert abs(shifts[:, 0].mean() + 2.0) < 0.03 and np.abs(shifts[:, 0] + 2.0).max() < 0.1, shifts
    assert np.abs(shifts[:, 1]).max() < 0.1
    # Not a frozen still: every frame differs from the last.
    assert min(float(np.abs(out[i + 1] - out[i]).mean()) for i in range(23)) > 0.01


# --- framing ------------------------------------------------------------------------------------


@pytest.fixture()
def ramp(tmp_path: Path) -> Path:
    """A 200×100 picture whose red channel is x / 200 and green y / 100 (pixel centres)."""
    y, x = np.mgrid[0:100, 0:200] + 0.5
    image = np.stack([x / 200, y / 100, np.full_like(x, 0.5)], axis=2)
    return save_png16(tmp_path / "ramp.png", image)


@pytest.mark.parametrize("anchor, left_red", [((0.0, 0.5), 0.0), ((0.5, 0.5), 0.25), ((1.0, 0.5), 0.5)])
def test_cover_fills_the_frame_and_crops_at_the_anchor(tmp_path, ramp, anchor, left_red):
    frames = StillBackground(image="ramp.png", anchor=list(anchor)).frames(context(tmp_path, 100, 100), [0])
    assert frames.shape == (1, 100, 100, 3)
    red = frames[0, 50, :, 0]
    assert abs(red[0] - (left_red + 0.5 / 200)) < 1e-3 and abs(red[-1] - (left_red + 0.5 - 0.5 / 200)) < 1e-3
    assert abs(frames[0, 0, 50, 1] - 0.005) < 1e-3 and abs(frames[0, -1, 50, 1] - 0.995) < 1e-3


@pytest.mark.parametrize("anchor, top", [((0.5, 0.5), 25), ((0.5, 0.0), 0), ((0.5, 1.0), 50)])
def test_contain_letterboxes_with_fill_at_the_anchor(tmp_path, ramp, anchor, top):
    fill = [0.2, 0.4, 0.6]
    frame = StillBackground(image="ramp.png", fit="contain", anchor=list(anchor), fill=fill).frames(
        context(tmp_path, 100, 100), [0]
    )[0]
    inside = np.zeros(100, bool)
    inside[top : top + 50] = True
    assert np.allclose(frame[~inside], fill, atol=1e-6)  # the letterbox
    picture = frame[inside]
    assert abs(picture[:, 0, 0].mean() - 1 / 200) < 2e-3 and abs(picture[:, -1, 0].mean() - 199 / 200) < 2e-3
    assert abs(picture[0, :, 1].mean() - 0.01) < 2e-3 and abs(picture[-1, :, 1].mean() - 0.99) < 2e-3


def test_stretch_scales_each_axis_to_the_frame(tmp_path, ramp):
    frame = StillBackground(image="ramp.png", fit="stretch").frames(context(tmp_path, 50, 200), [0])[0]
    assert frame.shape == (200, 50, 3)
    assert np.allclose(frame[100, :, 0], (np.arange(50) + 0.5) / 50, atol=2e-3)  # 200 → 50 columns
    assert np.allclose(frame[:, 25, 1], (np.arange(200) + 0.5) / 200, atol=1e-2)  # 100 → 200 rows


def test_a_plate_is_framed_like_a_still(tmp_path):
    columns = (np.arange(64) * 4).astype(np.uint8)  # column x holds 4·x
    frames = [np.repeat(np.broadcast_to(columns[None, :, None], (36, 64, 1)), 3, axis=2) for _ in range(2)]
    plate = write_clip(tmp_path / "columns.mkv", frames)
    left = PlateBackground(video=str(plate), anchor=[0, 0.5]).frames(context(tmp_path, 36, 36), [0])[0]
    right = PlateBackground(video=str(plate), anchor=[1, 0.5]).frames(context(tmp_path, 36, 36), [0])[0]
    assert np.array_equal(np.rint(left[0, :, 0] * 255), np.arange(36) * 4)  # columns 0..35
    assert np.array_equal(np.rint(right[0, :, 0] * 255), np.arange(28, 64) * 4)  # columns 28..63
    boxed = PlateBackground(video=str(plate), fit="contain", fill=1.0).frames(context(tmp_path, 64, 64), [0])[0]
    assert np.all(boxed[:14] == 1.0) and np.all(boxed[50:] == 1.0)  # 36 rows centred in 64
    assert np.array_equal(np.rint(boxed[14:50, :, 0] * 255), np.broadcast_to(np.arange(64) * 4, (36, 64)))


# --- still ---------------------------------------------------------------------------------------


def test_a_still_without_a_move_is_the_same_picture_at_every_offset(tmp_path):
    save_png16(tmp_path / "tex.png", texture(90, 160))
    source = StillBackground(image="tex.png")
    frames = source.frames(context(tmp_path, 64, 36, frames=100), [0, 1, 50, 99])
    assert all(np.array_equal(frames[0], f) for f in frames[1:])
    assert frames[0].std() > 0.05


@pytest.mark.parametrize("suffix", [".png", ".png16", ".jpg", ".tif", ".exr"])
def test_stills_are_read_from_png_jpeg_tiff_and_exr(tmp_path, monkeypatch, suffix):
    colour = np.array([0.2, 0.5, 0.8], np.float32)
    image = np.broadcast_to(colour, (20, 30, 3))
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    path = tmp_path / f"still{suffix.replace('16', '')}"
    if suffix == ".exr":
        monkeypatch.setenv("OPENCV_IO_ENABLE_OPENEXR", "1")
        assert cv2.imwrite(str(path), bgr.astype(np.float32))
    elif suffix in (".png16", ".tif"):
        assert cv2.imwrite(str(path), np.rint(bgr * 65535).astype(np.uint16))
    else:
        assert cv2.imwrite(str(path), np.rint(bgr * 255).astype(np.uint8))
    frame = StillBackground(image=path.name).frames(context(tmp_path, 30, 20), [0])[0]
    if suffix in (".png", ".jpg"):  # 8-bit: the nearest code value (JPEG: within its loss)
        expected, tolerance = np.rint(colour * 255) / 255, (3 / 255 if suffix == ".jpg" else 1e-6)
    else:
        expected, tolerance = colour, 1e-4
    assert np.abs(frame - expected).max() <= tolerance


def test_when_opencv_cannot_decode_exr_the_media_layer_does(tmp_path, monkeypatch):
    from studio_nova_plugins.backgrounds import _common

    monkeypatch.setenv("OPENCV_IO_ENABLE_OPENEXR", "1")
    colour = np.array([0.2, 0.5, 0.8], np.float32)
    assert cv2.imwrite(str(tmp_path / "still.exr"), np.ascontiguousarray(np.broadcast_to(colour[::-1], (20, 30, 3))))

    def disabled(data, flags):
        raise cv2.error("OpenEXR codec is disabled")

    monkeypatch.setattr(_common.cv2, "imdecode", disabled)
    frame = StillBackground(image="still.exr").frames(context(tmp_path, 30, 20), [0])[0]
    assert np.abs(frame - colour).max() < 1e-3


def test_a_still_pan_moves_at_constant_speed_without_jitter(tmp_path):
    save_png16(tmp_path / "blob.png", blob(300, 400, 200, 150, 12.0))
    move = {"zoom": [1.2, 1.2], "pan": [[0, 0], [0.06, 0]]}
    ctx = context(tmp_path, 160, 90, frames=41)
    frames = StillBackground(image="blob.png", move=move).frames(ctx, list(range(41)))
    xs = np.array([moments(f)[0] for f in frames])
    ys = np.array([moments(f)[1] for f in frames])
    # Truth: cover scale 0.4, zoom 1.2; the camera pans 0.06 × 160 frame px = 24 picture px,
    # so the picture slides left by 24 × 0.4 × 1.2 = 11.52 px over 40 frames: 0.288 px/frame.
    assert abs(xs[0] - 80.0) < 0.01 and abs(xs[-1] - xs[0] + 11.52) < 0.02
    steps = np.diff(xs)
    assert (steps < 0).all()  # monotonic
    assert np.abs(steps + 0.288).max() < 0.06  # OpenCV's 1/32-px warp tables bound the wobble
    assert np.abs(xs - (80.0 - 0.288 * np.arange(41))).max() < 0.03  # never off the ideal path
    assert np.abs(ys - 45.0).max() < 0.01
    # Chunked calls agree exactly: each frame's transform comes from its offset alone.
    again = StillBackground(image="blob.png", move=move).frames(ctx, list(range(30, 41)) + [0, 10, 20])
    assert np.array_equal(again[:11], frames[30:]) and np.array_equal(again[11:], frames[[0, 10, 20]])


def test_a_still_zoom_grows_smoothly_and_monotonically(tmp_path):
    save_png16(tmp_path / "blob.png", blob(300, 400, 200, 150, 12.0))
    frames = StillBackground(image="blob.png", move={"zoom": [1.0, 1.2]}).frames(
        context(tmp_path, 160, 90, frames=41), list(range(41))
    )
    size = np.array([moments(f)[2] for f in frames])
    ratio = size / size[0]
    assert abs(ratio[-1] - 1.2) < 0.003
    assert (np.diff(ratio) > 0).all()
    assert np.abs(ratio - np.linspace(1.0, 1.2, 41)).max() < 0.003  # linear in t, no jitter


def test_a_move_past_the_picture_edge_is_refused_with_the_amount(tmp_path):
    save_png16(tmp_path / "blob.png", blob(300, 400, 200, 150, 12.0))
    source = StillBackground(image="blob.png", move={"pan": [[0, 0], [0.05, 0]]})
    with pytest.raises(
        EditRequestError, match=r"move shows 5\.0% of the picture's size beyond its right edge at the end"
    ):
        source.frames(context(tmp_path, 160, 90), [0])
    contained = StillBackground(image="blob.png", fit="contain", move={"pan": [[0, 0], [0.05, 0]]})
    assert contained.frames(context(tmp_path, 160, 90), [0]).shape == (1, 90, 160, 3)


# --- params ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, params, match",
    [
        (StillBackground, {}, "needs params image"),
        (
            StillBackground,
            {"image": "a.png", "fit": "fill"},
            r"param fit must be one of \['cover', 'contain', 'stretch'\]",
        ),
        (StillBackground, {"image": "a.png", "anchor": [0.5, 2]}, "param anchor must be a pair"),
        (StillBackground, {"image": "a.png", "fill": "red"}, "param fill must be"),
        (StillBackground, {"image": "a.png", "move": {"zoom": [1, 20]}}, r"param move\.zoom must be"),
        (StillBackground, {"image": "a.png", "move": {"spin": 1}}, r"move does not know \['spin'\]"),
        (StillBackground, {"image": "a.png", "move": {"ease": "bounce"}}, r"param move\.ease must be one of"),
        (StillBackground, {"image": "a.png", "zoom": 1.1}, r"does not know the params \['zoom'\]"),
        (PlateBackground, {}, "needs params video"),
        (PlateBackground, {"video": "a.mov", "start": -1}, "param start must be an integer"),
        (PlateBackground, {"video": "a.mov", "start": 5, "end": 4}, r"param end \(4\) is before start \(5\)"),
        (PlateBackground, {"video": "a.mov", "loop": "bounce"}, "param loop must be one of"),
        (PlateBackground, {"video": "a.mov", "retime": "speed"}, "param retime must be one of"),
        (GeneratedBackground, {"frames": 80}, "param frames must be 4n\\+1"),
        (GeneratedBackground, {"height": 480}, "height and width go together"),
        (GeneratedBackground, {"height": 100, "width": 832}, "param height must be a multiple of 16"),
        (GeneratedBackground, {"steps": 0}, "param steps must be an integer"),
        (GeneratedBackground, {"dtype": "int8"}, "param dtype must be one of"),
        (GeneratedBackground, {"seed": "one"}, "param seed must be"),
        (GeneratedBackground, {"prompt": 3}, "param prompt must be text"),
    ],
)
def test_bad_params_are_refused_naming_the_param(cls, params, match):
    with pytest.raises(EditRequestError, match=match):
        cls(**params)


def test_the_entry_points_build_the_sources(tmp_path, plate40):
    save_png16(tmp_path / "tex.png", texture(36, 64))
    still = load_plugin(BACKGROUNDS, "still", image=str(tmp_path / "tex.png"))
    plate = load_plugin(BACKGROUNDS, "plate", video=str(plate40))
    generator = load_plugin(BACKGROUNDS, "generator", prompt="a harbour at dusk")
    assert (still.name, plate.name, generator.name) == ("still", "plate", "generator")
    ctx = context(tmp_path)
    for source, name in ((still, "still"), (plate, "plate")):
        check_background(source.frames(ctx, [0, 1]), ctx, [0, 1], name)
    assert StillBackground.readiness() == (True, None) and PlateBackground.readiness() == (True, None)


# --- generator ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from studio_nova.testing.tiny_backgrounds import ensure_tiny_backgrounds

    return ensure_tiny_backgrounds(tmp_path_factory.mktemp("tiny-backgrounds"))


def generator(tiny_models: tuple[Path, Path], **params) -> GeneratedBackground:
    t2i, i2v = tiny_models
    options = dict(
        t2i_dir=str(t2i), i2v_dir=str(i2v), frames=9, steps=2, t2i_steps=2, height=32, width=48, device="cpu"
    )
    options.update(params)
    return GeneratedBackground(**options)


def gen_context(tmp_path: Path, cache: str = "cache", seed: int = 7) -> BackgroundContext:
    return context(tmp_path, 48, 32, frames=20, seed=seed, instruction="a harbour at dusk", cache_dir=tmp_path / cache)


def test_the_generator_makes_a_moving_clip_once_and_every_later_call_reuses_it(tmp_path, tiny_models, monkeypatch):
    ctx = gen_context(tmp_path)
    frames = generator(tiny_models).frames(ctx, list(range(20)))
    check_background(frames, ctx, list(range(20)), "generator")
    # A 9-frame clip ping-pongs over a 20-frame shot: 0..8, 7..0, 1, 2.
    for offset, clip_frame in ((9, 7), (16, 0), (18, 2)):
        assert np.array_equal(frames[offset], frames[clip_frame])
    assert min(float(np.abs(frames[i + 1] - frames[i]).mean()) for i in range(8)) > 1e-3  # it moves
    cached = sorted(p.name for p in (tmp_path / "cache" / "backgrounds").iterdir())
    assert [Path(name).suffix for name in cached] == [".json", ".mkv", ".png"]
    spec = json.loads((tmp_path / "cache" / "backgrounds" / cached[0]).read_text())
    assert spec["prompt"] == "a harbour at dusk" and spec["seed"] == 7 and spec["frames"] == 9

    # A new source (a rerun, another chunk's worker) must not load any model.
    import diffusers

    def refuse(*args, **kwargs):
        raise AssertionError("a cached background loaded a pipeline")

    monkeypatch.setattr(diffusers.WanImageToVideoPipeline, "from_pretrained", refuse)
    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained", refuse)
    again = generator(tiny_models).frames(ctx, list(range(12, 20)))
    assert np.array_equal(again, frames[12:])


def test_the_same_seed_makes_the_same_clip_and_another_seed_another(tmp_path, tiny_models):
    first = generator(tiny_models).frames(gen_context(tmp_path, "a"), list(range(9)))
    second = generator(tiny_models).frames(gen_context(tmp_path, "b"), list(range(9)))
    other = generator(tiny_models, seed=8).frames(gen_context(tmp_path, "c"), list(range(9)))
    assert np.array_equal(first, second)
    assert np.abs(first - other).mean() > 0.01


def test_given_an_image_the_generator_animates_it_without_text_to_image(tmp_path, tiny_models, monkeypatch):
    import diffusers

    def refuse(*args, **kwargs):
        raise AssertionError("text-to-image loaded although an image was given")

    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained", refuse)
    save_png16(tmp_path / "start.png", texture(64, 96))
    source = generator(tiny_models, image="start.png", t2i_dir=None)
    frames = source.frames(gen_context(tmp_path), [0, 5, 19])
    assert frames.shape == (3, 32, 48, 3)


def test_without_weights_the_generator_names_the_settings(tmp_path, monkeypatch, tiny_models):
    from studio_nova.config import Settings

    for name in ("STUDIO_NOVA_BACKGROUND_T2I_DIR", "STUDIO_NOVA_BACKGROUND_I2V_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="set STUDIO_NOVA_BACKGROUND_I2V_DIR"):
        GeneratedBackground(device="cpu").frames(gen_context(tmp_path), [0])
    with pytest.raises(ConfigError, match="set STUDIO_NOVA_BACKGROUND_T2I_DIR .* or give params image"):
        GeneratedBackground(i2v_dir=str(tiny_models[1])).frames(gen_context(tmp_path), [0])
    with pytest.raises(ConfigError, match=r"params i2v_dir points at .*lacks the folder itself"):
        GeneratedBackground(i2v_dir=str(tmp_path / "nowhere"), t2i_dir=str(tiny_models[0])).frames(
            gen_context(tmp_path), [0]
        )
    ready, reason = GeneratedBackground.readiness(Settings())
    assert not ready and "STUDIO_NOVA_BACKGROUND_I2V_DIR is not set" in reason
    ready, reason = GeneratedBackground.readiness(Settings(background_i2v_dir=str(tiny_models[1])))
    assert not ready and "STUDIO_NOVA_BACKGROUND_T2I_DIR is not set" in reason
    ready, reason = GeneratedBackground.readiness(
        Settings(background_i2v_dir=str(tiny_models[1]), background_t2i_dir=str(tiny_models[0]))
    )
    assert (ready, reason) == (True, None)
    assert not list(tmp_path.rglob("*.mkv"))  # nothing was made
