"""The `recolor` and `artist` keyframe editors, and keyframe PNG files, on real images and files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from studio_nova.errors import EditRequestError, KeyframeError
from studio_nova.media.frames import from_float, to_float
from studio_nova.media.keyframe_files import (
    keyframe_filename,
    read_mask_png,
    read_png,
    read_png_samples,
    write_mask_png,
    write_png,
)
from studio_nova.plugin_api.editing import EditContext, Keyframe, KeyframeEditor
from studio_nova_plugins.editors.artist import ArtistEditor, painted_mask
from studio_nova_plugins.editors.recolor import RecolorEditor, parse_instruction, recolor_image

H, W = 48, 64


# --- helpers -------------------------------------------------------------------------------------


def hsv_image(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Float RGB from per-pixel HSV (hue in degrees), through the same cv2 convention as recolor."""
    hsv = np.dstack([hue, sat, val]).astype(np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def hues(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2HSV)[..., 0]


def hue_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed circular difference a - b in degrees, in [-180, 180)."""
    return (a - b + 180.0) % 360.0 - 180.0


def scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A noisy frame: a left block of reds (hue within ±15°), the rest far from red, some greys.

    Returns (image, keyed, outside): the boolean maps of pixels fully inside and fully outside
    a red key of width 40 and softness 15 (so outside means more than 35° from red, or grey).
    """
    rng = np.random.default_rng(seed)
    keyed = np.zeros((H, W), bool)
    keyed[8:40, 4:28] = True
    hue = np.where(keyed, rng.uniform(-15, 15, (H, W)) % 360, rng.uniform(60, 300, (H, W)))
    sat = rng.uniform(0.5, 1.0, (H, W))
    val = rng.uniform(0.3, 1.0, (H, W))
    grey = np.zeros((H, W), bool)
    grey[40:, :] = True
    sat = np.where(grey, 0.0, sat)
    return hsv_image(hue, sat, val), keyed & ~grey, ~keyed


def context(images: list[np.ndarray], frames: list[int] | None = None, **kwargs) -> EditContext:
    frames = frames if frames is not None else [10 * i for i in range(len(images))]
    kwargs.setdefault("shot", "sh010")
    kwargs.setdefault("instruction", "")
    return EditContext(keyframes=[Keyframe(f, im) for f, im in zip(frames, images)], **kwargs)


RED_KEY = {"hue": 0, "width": 40, "softness": 15, "min_saturation": 0.2}


# --- keyframe files ------------------------------------------------------------------------------


def test_keyframe_filename_is_the_zero_padded_source_frame() -> None:
    assert keyframe_filename(10) == "000010.png"
    assert keyframe_filename(1234567) == "1234567.png"
    with pytest.raises(ValueError):
        keyframe_filename(-1)


def test_8_bit_png_round_trip_is_exact_and_rgb_on_disk(tmp_path: Path) -> None:
    samples = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    path = write_png(tmp_path / "a.png", to_float(samples), 8)
    assert np.array_equal(read_png_samples(path), samples)
    assert np.array_equal(read_png(path), to_float(samples))
    # An independent decoder sees RGB in RGB order.
    assert np.array_equal(np.asarray(Image.open(path)), samples)


def test_16_bit_png_round_trip_is_exact(tmp_path: Path) -> None:
    samples = np.random.default_rng(2).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    samples[0, 0] = (65535, 0, 1)
    path = write_png(tmp_path / "a.png", to_float(samples), 10)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    assert tuple(raw[0, 0]) == (1, 0, 65535)  # BGR on the cv2 side: RGB in the file
    assert np.array_equal(read_png_samples(path), samples)
    assert np.abs(read_png(path) - to_float(samples)).max() <= 1 / 65535


def test_grey_grey_alpha_palette_and_rgba_files_read_as_rgb(tmp_path: Path) -> None:
    grey = (np.arange(H * W).reshape(H, W) % 256).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    Image.fromarray(np.dstack([grey, 255 - grey]), "LA").save(tmp_path / "la.png")
    Image.fromarray(grey, "L").convert("P").save(tmp_path / "p.png")
    rgba = np.dstack([grey, grey // 2, grey // 3, 255 - grey])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    for name in ("l", "la", "p"):
        image = read_png(tmp_path / f"{name}.png")
        assert image.shape == (H, W, 3) and image.dtype == np.float32
        assert np.array_equal(image, to_float(np.dstack([grey] * 3))), name
    assert np.array_equal(read_png(tmp_path / "rgba.png"), to_float(rgba[..., :3]))


def test_an_existing_different_file_is_never_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "kf" / keyframe_filename(20)
    first = to_float(np.full((H, W, 3), 100, np.uint8))
    second = to_float(np.full((H, W, 3), 200, np.uint8))
    write_png(path, first, 8)
    write_png(path, first, 8)  # same pixels again: an idempotent rerun
    with pytest.raises(KeyframeError) as error:
        write_png(path, second, 8)
    assert error.value.path == path
    assert read_png_samples(path)[0, 0, 0] == 100
    write_png(path, second, 8, overwrite=True)
    assert read_png_samples(path)[0, 0, 0] == 200
    assert sorted(p.name for p in path.parent.iterdir()) == ["000020.png"]  # no temp files left


def test_mask_png_round_trip_at_8_and_16_bits(tmp_path: Path) -> None:
    mask = np.random.default_rng(3).uniform(0, 1, (H, W)).astype(np.float32)
    for depth, scale in ((8, 255), (16, 65535)):
        path = write_mask_png(tmp_path / f"m{depth}.png", mask, bit_depth=depth)
        back = read_mask_png(path)
        assert back.shape == (H, W)
        assert np.array_equal(back, to_float(from_float(mask, np.uint8 if depth == 8 else np.uint16)))
        assert np.abs(back - mask).max() <= 0.5 / scale + 1e-7


def test_missing_and_undecodable_files_name_the_path(tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", np.zeros((H, W, 3), np.float32), 8)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    jpeg = tmp_path / "jpeg.png"
    Image.new("RGB", (W, H)).save(jpeg, format="JPEG")
    for path in (tmp_path / "missing.png", truncated, garbage, jpeg, tmp_path):
        with pytest.raises(KeyframeError) as error:
            read_png(path)
        assert error.value.path == path
        assert str(path) in str(error.value)


# --- recolor -------------------------------------------------------------------------------------


def test_recolor_is_a_keyframe_editor() -> None:
    assert isinstance(RecolorEditor(), KeyframeEditor) and RecolorEditor.name == "recolor"
    assert isinstance(ArtistEditor(), KeyframeEditor) and ArtistEditor.name == "artist"


def test_hue_shift_moves_keyed_hues_and_leaves_the_rest_bit_exact() -> None:
    image, keyed, outside = scene()
    result = RecolorEditor().edit(context([image], params={"key": RED_KEY, "hue_shift": 120}))
    edited = result.keyframes[0]
    shift = hue_difference(hues(edited.image), hues(image))
    assert np.abs(shift[keyed] - 120).max() < 0.01
    before = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    after = cv2.cvtColor(edited.image, cv2.COLOR_RGB2HSV)
    assert np.abs(after[keyed][:, 1:] - before[keyed][:, 1:]).max() < 1e-5  # S and V kept
    assert np.array_equal(edited.image[outside], image[outside])
    assert np.all(edited.mask[keyed] == 1) and np.all(edited.mask[outside] == 0)
    assert edited.image.dtype == np.float32 and edited.mask.dtype == np.float32


def test_key_falls_off_smoothly_over_softness_and_ignores_unsaturated_pixels() -> None:
    # Hue 20° from red: edge of full weight; 23.75°: a quarter into the 15° falloff, where
    # smoothstep gives 1 - 0.15625; 35°: zero. 340° is 20° the other way round the wheel.
    hue = np.array([[20.0, 23.75, 35.0, 340.0, 0.0, 0.0]])
    # Saturation 0.225: a quarter into the 0.1 ramp above min_saturation 0.2 → 0.15625.
    sat = np.array([[1.0, 1.0, 1.0, 1.0, 0.15, 0.225]])
    image = hsv_image(hue, sat, np.ones_like(hue))
    _, mask = recolor_image(image, {"key": RED_KEY, "hue_shift": 90})
    assert np.allclose(mask[0], [1.0, 0.84375, 0.0, 1.0, 0.0, 0.15625], atol=1e-4)


def test_global_grade_has_an_all_ones_mask_and_exact_numbers() -> None:
    image, _, _ = scene(4)
    grey, mask = recolor_image(image, {"saturation": 0})
    assert np.all(mask == 1)
    assert np.abs(grey - image.max(axis=2, keepdims=True)).max() < 1e-6  # HSV value kept
    flat = np.full((2, 2, 3), 0.25, np.float32)
    out, _ = recolor_image(flat, {"gamma": 2.0, "gain": [2.0, 1.0, 0.5]})
    assert np.allclose(out[0, 0], [1.0, 0.5, 0.25], atol=1e-6)
    out, _ = recolor_image(np.zeros((2, 2, 3), np.float32), {"lift": [0.5, 0.0, 0.25]})
    assert np.allclose(out[0, 0], [0.5, 0.0, 0.25], atol=1e-6)


def test_recolor_is_deterministic_and_records_the_seed() -> None:
    image, _, _ = scene(5)
    params = {"key": RED_KEY, "hue_shift": -60, "saturation": 1.2}
    first = RecolorEditor().edit(context([image, image[::-1]], params=params, seed=1))
    second = RecolorEditor().edit(context([image, image[::-1]], params=params, seed=2))
    assert [k.source_frame for k in first.keyframes] == [0, 10]
    for a, b in zip(first.keyframes, second.keyframes):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert first.info["seed"] == 1 and first.info["params"]["hue_shift"] == -60


def test_region_confines_the_edit() -> None:
    image, keyed, _ = scene(6)
    region = np.zeros((H, W), np.float32)
    region[:, :16] = 1.0
    edited = RecolorEditor().edit(context([image], params={"key": RED_KEY, "hue_shift": 90}, region=region))
    kf = edited.keyframes[0]
    assert np.array_equal(kf.image[:, 16:], image[:, 16:])
    assert np.all(kf.mask[:, 16:] == 0)
    inside = keyed.copy()
    inside[:, 16:] = False
    assert np.abs(hue_difference(hues(kf.image), hues(image))[inside] - 90).max() < 0.01


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("red to blue", {"key": {"hue": 0.0}, "hue_shift": -120.0}),
        ("Make the red car green", {"key": {"hue": 0.0}, "hue_shift": 120.0}),
        ("turn the yellow flowers purple", {"key": {"hue": 60.0}, "hue_shift": -135.0}),
        ("make the blue sky grey", {"key": {"hue": 240.0}, "saturation": 0.0}),
        ("black and white", {"saturation": 0.0}),
        ("make the green wall darker", {"key": {"hue": 120.0}, "gain": 0.8}),
        ("brighter", {"gain": 1.25}),
        ("a nicer shot please", None),
    ],
)
def test_instructions_become_params(instruction: str, expected: dict | None) -> None:
    assert parse_instruction(instruction) == expected


def test_editor_follows_an_instruction_when_params_give_no_operation() -> None:
    image, keyed, outside = scene(7)
    result = RecolorEditor().edit(context([image], instruction="make the red car green"))
    kf = result.keyframes[0]
    assert np.abs(hue_difference(hues(kf.image), hues(image))[keyed] - 120).max() < 0.01
    assert np.array_equal(kf.image[outside], image[outside])
    assert result.info["from"] == "instruction"
    # Params with an operation win over the instruction: here a global hue shift.
    result = RecolorEditor().edit(context([image], instruction="red to blue", params={"hue_shift": 30}))
    assert result.info["from"] == "params" and np.all(result.keyframes[0].mask == 1)


def test_an_instruction_without_an_operation_is_an_error_naming_the_shot() -> None:
    image, _, _ = scene()
    with pytest.raises(EditRequestError) as error:
        RecolorEditor().edit(context([image], shot="sh042", instruction="make it pop"))
    assert error.value.shot == "sh042"
    assert "sh042" in str(error.value) and "red to blue" in str(error.value)


@pytest.mark.parametrize(
    ("params", "instruction", "fragment"),
    [
        ({"hueshift": 10}, "", "hueshift"),
        ({"saturation": -1}, "", "saturation"),
        ({"gain": [1, 2]}, "", "gain"),
        ({"gamma": 0}, "", "gamma"),
        ({"hue_shift": "a lot"}, "", "hue_shift"),
        ({"key": {"width": 30}, "hue_shift": 10}, "", "hue"),
        ({"key": {"hue": "mauve"}, "hue_shift": 10}, "", "mauve"),
        ({"key": {"hue": 0, "sharpness": 3}, "hue_shift": 10}, "", "sharpness"),
        ({}, "make the red, yellow and green cars blue", "4 colours"),
        ({}, "make the red car black", "black"),
        ({}, "grey to red", "grey"),
    ],
)
def test_bad_requests_are_refused(params: dict, instruction: str, fragment: str) -> None:
    image, _, _ = scene()
    with pytest.raises(EditRequestError) as error:
        RecolorEditor().edit(context([image], params=params, instruction=instruction, shot="sh7"))
    assert error.value.shot == "sh7" and fragment in str(error.value)


def test_a_region_of_the_wrong_size_is_refused() -> None:
    image, _, _ = scene()
    with pytest.raises(EditRequestError):
        RecolorEditor().edit(context([image], params={"hue_shift": 5}, region=np.ones((H, W + 1))))


# --- artist --------------------------------------------------------------------------------------


def originals(count: int, bits: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Float keyframes as a decoder of a `bits`-deep source would give them."""
    rng = np.random.default_rng(seed)
    top = 2**bits - 1
    return [(rng.integers(0, top + 1, (H, W, 3)) / top).astype(np.float32) for _ in range(count)]


def export_and_paint(folder: Path, images: list[np.ndarray], frames: list[int], depth: int) -> None:
    """Export every keyframe, then paint a rectangle on the first one as an artist would."""
    for frame, image in zip(frames, images):
        write_png(folder / keyframe_filename(frame), image, depth)
    painted = images[0].copy()
    painted[10:20, 30:45] = (0.9, 0.1, 0.2)
    write_png(folder / keyframe_filename(frames[0]), painted, depth, overwrite=True)


@pytest.mark.parametrize(("source_bits", "depth"), [(8, 8), (10, 16), (16, 16), (10, 8)])
def test_artist_reads_paintings_exactly_with_a_mask_of_the_painted_area(
    tmp_path: Path, source_bits: int, depth: int
) -> None:
    images = originals(3, source_bits)
    frames = [100, 110, 120]
    export_and_paint(tmp_path, images, frames, depth)
    result = ArtistEditor().edit(context(images, frames, params={"dir": str(tmp_path)}))
    assert [k.source_frame for k in result.keyframes] == frames
    for kf in result.keyframes:
        expected = read_png(tmp_path / keyframe_filename(kf.source_frame))
        assert np.abs(kf.image - expected).max() <= 1 / 65535
    painted = result.keyframes[0]
    assert np.allclose(painted.image[10:20, 30:45], (0.9, 0.1, 0.2), atol=0.5 / 255)
    assert np.all(painted.mask[10:20, 30:45] == 1)
    far = np.ones((H, W), bool)
    far[7:23, 27:48] = False  # the painted box grown by feather (2) + hole closing (1)
    assert np.all(painted.mask[far] == 0)
    for untouched in result.keyframes[1:]:
        assert np.count_nonzero(untouched.mask) == 0
    names = [keyframe_filename(f) for f in frames]
    assert result.info["dir"] == str(tmp_path)
    assert result.info["files"] == {
        n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in names
    }


def test_artist_lists_every_keyframe_still_to_paint(tmp_path: Path) -> None:
    images = originals(10)
    frames = list(range(0, 100, 10))
    for frame in (0, 40, 50, 60, 70, 80, 90):
        write_png(tmp_path / keyframe_filename(frame), images[frame // 10], 8)
    with pytest.raises(KeyframeError) as error:
        ArtistEditor().edit(context(images, frames, params={"dir": str(tmp_path)}, shot="sh3"))
    message = str(error.value)
    assert f"3 of 10 keyframes still to paint in {tmp_path}: 000010.png, 000020.png, 000030.png" in message
    assert error.value.shot == "sh3" and error.value.details["missing_frames"] == [10, 20, 30]


def test_artist_with_no_folder_yet_lists_every_keyframe(tmp_path: Path) -> None:
    with pytest.raises(KeyframeError) as error:
        ArtistEditor().edit(context(originals(2), [5, 15], params={"dir": str(tmp_path / "nope")}))
    assert "2 of 2 keyframes still to paint" in str(error.value)
    assert "000005.png, 000015.png" in str(error.value) and "does not exist" in str(error.value)


def test_artist_refuses_a_painting_of_the_wrong_size(tmp_path: Path) -> None:
    images = originals(2)
    write_png(tmp_path / keyframe_filename(0), images[0], 8)
    write_png(tmp_path / keyframe_filename(10), np.zeros((H // 2, W, 3), np.float32), 8)
    with pytest.raises(KeyframeError) as error:
        ArtistEditor().edit(context(images, [0, 10], params={"dir": str(tmp_path)}))
    assert error.value.frame == 10 and error.value.path == tmp_path / "000010.png"
    assert "000010.png is 64×24" in str(error.value) and "source frame is 64×48" in str(error.value)


def test_artist_refuses_an_undecodable_painting_naming_the_frame(tmp_path: Path) -> None:
    (tmp_path / keyframe_filename(7)).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(KeyframeError) as error:
        ArtistEditor().edit(context(originals(1), [7], params={"dir": str(tmp_path)}))
    assert error.value.frame == 7 and "000007.png" in str(error.value)


@pytest.mark.parametrize(
    "params", [{}, {"dir": ""}, {"dir": 3}, {"dir": "x", "feather": -1}, {"folder": "x"}]
)
def test_artist_needs_a_dir_param(params: dict) -> None:
    with pytest.raises(EditRequestError) as error:
        ArtistEditor().edit(context(originals(1), params=params, shot="sh9"))
    assert error.value.shot == "sh9"


def test_painted_mask_fills_holes_skips_speck_halos_and_feathers_outward_only() -> None:
    changed = np.zeros((H, W), bool)
    changed[10:20, 10:20] = True
    changed[15, 15] = False  # repainted with its own value: a hole
    changed[35, 50] = True  # a lone speck
    mask = painted_mask(changed, feather=2)
    assert np.all(mask[changed] == 1)
    assert mask[15, 15] == 1
    assert 0 < mask[9, 15] < 1 and 0 < mask[15, 20] < 1  # feathered just outside the stroke
    assert np.all(mask[15, 23:] == 0) and mask[15, 7] == 0  # 3+ px away: nothing
    assert mask[34, 50] == 0 and mask[35, 51] == 0  # the speck has no halo
    assert np.count_nonzero(painted_mask(np.zeros((H, W), bool))) == 0
