"""Training data (issue 5): clips from a folder or a cut, model-size windows, the contact sheet.

Clips are synthetic scenes written as real video files (ffv1, lossless), so decoded windows can
be compared with what was drawn.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
import pytest
from opentimelineio.opentime import RationalTime, TimeRange

from studio_nova.errors import TrainingDataError
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.training.contact_sheet import (
    COLUMNS,
    HEADER,
    LABEL,
    MARGIN,
    panel_size,
    sheet_size,
    write_contact_sheet,
)
from studio_nova.training.data import WindowDataset, WindowSampler, find_clips, fit_crop
from studio_nova.training.synthetic import write_clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_clips(folder)  # 40, 33 and 50 frames; 64x48, 48x48, 80x48
    (folder / "clip1.txt").write_text("a street at dusk\n")
    nested = folder / "day2"
    write_clips(nested, [(10, 32, 32)], seed=40)  # too short for a 17-frame window
    (nested / "broken.mov").write_bytes(b"\x00not a movie" * 100)
    hidden = folder / ".cache"
    write_clips(hidden, [(20, 32, 32)], seed=41)
    return folder


def test_a_folder_gives_its_clips_and_names_what_it_skips_and_why(clips):
    data = find_clips(clips, 17)
    assert sorted(c.path.name for c in data.clips) == ["clip0.mkv", "clip1.mkv", "clip2.mkv"]
    assert {c.path.name: c.frame_count for c in data.clips} == {"clip0.mkv": 40, "clip1.mkv": 33, "clip2.mkv": 50}
    reasons = {s.path.name: s.reason for s in data.skipped}
    assert set(reasons) == {"clip0.mkv", "broken.mov"}  # day2/clip0.mkv is 10 frames; .cache is hidden
    assert "shorter than a window of 17" in reasons["clip0.mkv"]
    assert reasons["broken.mov"].startswith("unreadable")
    assert [c.caption for c in sorted(data.clips, key=lambda c: c.name)] == [None, "a street at dusk", None]
    assert {s.path.name for s in find_clips(clips, 17, exclude=clips / "day2").skipped} == set(), \
        "a run folder inside the data is not data"


def test_an_empty_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(TrainingDataError, match="no video clips") as error:
        find_clips(tmp_path, 17)
    assert error.value.path == tmp_path


def test_a_folder_with_no_usable_clip_is_an_error_that_says_why(clips):
    with pytest.raises(TrainingDataError, match="no usable clip") as error:
        find_clips(clips / "day2", 17)
    assert "shorter than a window" in str(error.value) and "unreadable" in str(error.value)


def test_a_missing_path_is_an_error_naming_it(tmp_path):
    with pytest.raises(TrainingDataError, match="not found") as error:
        find_clips(tmp_path / "nowhere", 17)
    assert error.value.path == tmp_path / "nowhere"


def test_a_cut_trains_on_the_used_range_of_each_of_its_clips(clips, tmp_path):
    def clip(name: str, media: str, start: int, duration: int, caption: str | None = None) -> otio.schema.Clip:
        ref = otio.schema.ExternalReference(
            target_url=str(clips / media), available_range=TimeRange(RationalTime(0, 25), RationalTime(50, 25))
        )
        item = otio.schema.Clip(name=name, media_reference=ref,
                                source_range=TimeRange(RationalTime(start, 25), RationalTime(duration, 25)))
        if caption:
            item.metadata["studio_nova"] = {"caption": caption}
        return item

    timeline = otio.schema.Timeline(name="cut")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.extend([clip("a", "clip2.mkv", 5, 30, "harbour"), clip("b", "clip0.mkv", 10, 8),
                  clip("c", "missing.mov", 0, 20)])
    timeline.tracks.append(track)
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    data = find_clips(path, 17)
    assert [(c.path.name, c.first_frame, c.last_frame, c.caption) for c in data.clips] == [
        ("clip2.mkv", 5, 34, "harbour")
    ]
    assert sorted(s.reason.split(":")[0] for s in data.skipped) == [
        "8 frames, shorter than a window of 17", "clip 'c' (V1/2) unreadable"
    ]


def test_windows_are_decoded_frames_resized_to_cover_and_cropped(clips):
    data = find_clips(clips, 17)
    dataset = WindowDataset(data, frames=17, height=32, width=32, seed=0)
    for index in range(4):
        plan = dataset.plan(index)
        sample = dataset[index]
        clip = data.clips[plan.clip]
        expected = np.stack([
            to_float(fit_crop(f, 32, 32, *plan.crop))
            for f in read_frames(clip.info, clip.first_frame + plan.start, clip.first_frame + plan.start + 16)
        ])
        assert sample.target.shape == (17, 32, 32, 3) and sample.target.dtype == np.float32
        assert np.array_equal(sample.target, expected)
        assert plan.other_clip != plan.clip, "pasted content comes from another clip"


def test_fit_crop_keeps_the_aspect_and_crops_the_slack():
    frame = np.arange(48 * 80 * 3, dtype=np.uint8).reshape(48, 80, 3)
    left, right = fit_crop(frame, 32, 32, 0.0, 0.0), fit_crop(frame, 32, 32, 0.0, 1.0)
    whole = cv2.resize(frame, (53, 32), interpolation=cv2.INTER_AREA)  # 80x48 scaled to cover 32x32
    assert np.array_equal(left, whole[:, :32]) and np.array_equal(right, whole[:, 21:])


def test_a_sample_is_a_pure_function_of_seed_and_index(clips):
    data = find_clips(clips, 17)
    a = WindowDataset(data, frames=17, height=32, width=32, seed=3)
    b = WindowDataset(data, frames=17, height=32, width=32, seed=3)
    other_seed = WindowDataset(data, frames=17, height=32, width=32, seed=4)
    x, y = a[5], b[5]
    for name in ("target", "guide", "is_known", "pseudo_source", "paste_masks"):
        assert np.array_equal(getattr(x, name), getattr(y, name)), name
    assert x.meta == y.meta
    assert not np.array_equal(x.pseudo_source, a[6].pseudo_source)
    assert [other_seed.plan(i) for i in range(8)] != [a.plan(i) for i in range(8)]


def test_longer_clips_are_drawn_in_proportion_to_their_windows(clips):
    data = find_clips(clips, 17)
    dataset = WindowDataset(data, frames=17, height=32, width=32, seed=0)
    drawn = np.bincount([dataset.plan(i).clip for i in range(3000)], minlength=3) / 3000
    windows = np.array([c.frame_count - 16 for c in data.clips], float)
    np.testing.assert_allclose(drawn, windows / windows.sum(), atol=0.03)


def test_the_sampler_position_is_the_whole_data_state():
    sampler = WindowSampler(seed=9)
    assert [sampler.next_index() for _ in range(3)] == [0, 1, 2]
    restored = WindowSampler(seed=9)
    restored.load_state_dict(sampler.state_dict())
    assert restored.next_index() == 3
    with pytest.raises(ValueError, match="seed"):
        WindowSampler(seed=1).load_state_dict(sampler.state_dict())


def test_the_contact_sheet_shows_target_degraded_keyframe_and_pseudo_source(clips, tmp_path):
    data = find_clips(clips, 17)
    dataset = WindowDataset(data, frames=17, height=32, width=48, seed=0)
    samples = [dataset[i] for i in range(3)]
    path = write_contact_sheet(tmp_path / "sheet.png", samples, per_sample=2, panel_width=96)
    sheet = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    rows = sum(min(2, len(s.keyframes)) for s in samples)
    assert sheet.shape[:2] == sheet_size(rows, 32, 48, 96) == (HEADER + rows * (LABEL + 64 + MARGIN), 6 + 3 * 102)
    assert len(COLUMNS) == 3 and panel_size(32, 48, 96) == (64, 96)
    # The first row's target panel is the sample's first frame, scaled (nearest) to the panel.
    top = HEADER + LABEL
    expected = cv2.resize((samples[0].target[0] * 255).round().astype(np.uint8), (96, 64),
                          interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(sheet[top:top + 64, MARGIN:MARGIN + 96], expected)
    pseudo = sheet[top:top + 64, MARGIN + 2 * 102:MARGIN + 2 * 102 + 96]
    assert (pseudo == (0, 220, 255)).all(axis=-1).any(), "the pasted region is outlined"
    described = (tmp_path / "sheet.json").read_text()
    assert all(s.meta["clip"] in described for s in samples)
    assert not list(tmp_path.glob(".*tmp*")), "written under a temporary name, then renamed"
