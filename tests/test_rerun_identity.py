"""Unattended reruns are right: a render is reused only while everything that decides its pixels
is unchanged, any change makes a new version, and cuts and shots never share an output path.

Every rerun is checked against a fresh run of the same cut in a new folder: the rerun's render
must hold exactly the pixels the fresh run makes, and (where the change matters) not the pixels
of the render it replaced. Real media, a real store and the real `recolor` / `artist` / `flow`
plugins throughout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from test_pipeline import KEYED, _clip, _timeline, _write

from studio_nova import workflow
from studio_nova.config import Settings
from studio_nova.footage.synthetic import make_scene
from studio_nova.media.decode import read_frames
from studio_nova.media.fingerprint import EDGE_BYTES, file_fingerprint
from studio_nova.media.keyframe_files import keyframe_filename, write_png
from studio_nova.media.probe import probe
from studio_nova.store import Store

FRAMES = 40
TEAL = dict(KEYED, hue_shift=130)
GOLD = dict(KEYED, hue_shift=60)


def _edit(params=TEAL, **extra):
    return {"instruction": "red to teal", "editor": "recolor", "params": params, **extra}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun-media")
    a = _write(root / "A001.mov", make_scene(FRAMES, 128, 72, seed=5, noise=0.01).frames, timecode="01:00:00:00")
    b = _write(root / "B001.mov", make_scene(FRAMES, 128, 72, seed=23, noise=0.01).frames, timecode="01:00:00:00")
    return root, a, b


def _settings(**overrides) -> Settings:
    return Settings(**{"chunk_length": 17, "chunk_overlap": 4, **overrides})


def _run(out: Path, timeline: Path, settings: Settings | None = None) -> dict:
    ws = workflow.Workspace.open(out, settings or _settings())
    try:
        return workflow.run_cut(ws, timeline, auto_approve=True).to_dict()
    finally:
        ws.close()


def _pixels(path: str | Path) -> np.ndarray:
    info = probe(path)
    return np.stack(list(read_frames(info, 0, info.frame_count - 1)))


def _by_name(report: dict) -> dict[str, dict]:
    return {s["name"]: s for s in report["shots"]}


def _fresh(tmp_path: Path, timeline: Path, settings: Settings | None = None) -> dict[str, np.ndarray]:
    """Each shot's pixels from a run of the cut in a folder of its own."""
    out = tmp_path / f"fresh-{len(list(tmp_path.glob('fresh-*')))}"
    report = _run(out, timeline, settings)
    return {s["name"]: _pixels(s["render"]) for s in report["shots"]}


def _renders(out: Path) -> list[tuple[str, int, str]]:
    with Store.open(f"sqlite:///{out / 'studio-nova.db'}") as store:
        return [(s.name, r.version, r.status) for s in store.shots() for r in store.renders(s.id)]


def _linked_media(conformed: str) -> dict[str, tuple[str, int, int]]:
    """clip name → (target_url, available start, duration) in the conformed cut."""
    cut = otio.adapters.read_from_file(conformed)
    found = {}
    for clip in cut.find_clips():
        ref = clip.media_reference
        found[clip.name] = (ref.target_url, ref.available_range.start_time.value, ref.available_range.duration.value)
    return found


def _paint_keyframes(folder: Path, media: Path, first: int, last: int) -> Path:
    """What an artist hands back: every keyframe of the shot with a white square painted on."""
    folder.mkdir(parents=True, exist_ok=True)
    for kf in workflow.original_keyframes(media, first, last, Settings().keyframe_interval):
        image = kf.image.copy()
        image[10:30, 20:44] = 1.0
        write_png(folder / keyframe_filename(kf.source_frame), image, 8, overwrite=True)
    return folder


CHANGES = {
    "params": lambda m, r: [_clip("sh010", m[1], 0, 24, total=FRAMES, edit=_edit(GOLD))],
    "range": lambda m, r: [_clip("sh010", m[1], 5, 24, total=FRAMES, edit=_edit())],
    "media": lambda m, r: [_clip("sh010", m[2], 0, 24, total=FRAMES, edit=_edit())],
    "editor": lambda m, r: [
        _clip("sh010", m[1], 0, 24, total=FRAMES, edit={
            "instruction": "paint", "editor": "artist",
            "params": {"dir": str(_paint_keyframes(r / "painted", m[1], 0, 23))},
        })
    ],
    "seed": lambda m, r: [_clip("sh010", m[1], 0, 24, total=FRAMES, edit=_edit(seed=7))],
}


@pytest.mark.parametrize("saved_as", ["same file", "new file"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_when_the_cut_changes_then_the_rerun_renders_a_new_version_equal_to_a_fresh_run(media, tmp_path, change, saved_as):
    root = tmp_path / "cut"
    root.mkdir()
    timeline = _timeline(root / "cut.otio", [_clip("sh010", media[1], 0, 24, total=FRAMES, edit=_edit())])
    out = tmp_path / "out"
    first = _by_name(_run(out, timeline))["sh010"]
    assert first["version"] == "v001"
    before = _pixels(first["render"])
    digest = hashlib.sha256(Path(first["render"]).read_bytes()).hexdigest()

    # The editor saves the changed cut over the old one, or (as NLE exports do) as a new file.
    changed = root / ("cut.otio" if saved_as == "same file" else "cut_v2.otio")
    _timeline(changed, CHANGES[change](media, root))
    report = _run(out, changed)
    again = _by_name(report)["sh010"]
    assert again["status"] == "conformed" and again["render"] != first["render"], again
    if saved_as == "same file":
        assert again["version"] == "v002"
    assert hashlib.sha256(Path(first["render"]).read_bytes()).hexdigest() == digest, "v001 was touched"
    after = _pixels(again["render"])
    truth = _fresh(tmp_path, changed)["sh010"]
    assert np.array_equal(after, truth), "the rerun's render differs from a fresh run of the changed cut"
    if change != "seed":  # recolor ignores the seed: a new version, the same pixels
        assert not np.array_equal(after, before), "the change did not change the pixels; the test proves nothing"
    # The conformed cut links the new render over the clip's (new) range.
    url, start, duration = _linked_media(report["conformed"])["sh010"]
    assert url.endswith(Path(again["render"]).name) and duration == 24
    assert again["first_frame"] == (5 if change == "range" else 0)


def test_when_nothing_changed_then_the_rerun_renders_nothing_and_touches_no_file(media, tmp_path):
    timeline = _timeline(tmp_path / "cut.otio", [_clip("sh010", media[1], 0, 24, total=FRAMES, edit=_edit())])
    out = tmp_path / "out"
    first = _by_name(_run(out, timeline))["sh010"]
    stamp = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in (out / "renders").rglob("*") if p.is_file()}
    again = _by_name(_run(out, timeline))["sh010"]
    assert (again["render"], again["version"]) == (first["render"], "v001")
    assert _renders(out) == [("sh010", 1, "complete")]
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in (out / "renders").rglob("*") if p.is_file()} == stamp


@pytest.mark.parametrize(
    "setting", [{"flow_preset": "medium"}, {"prores_qscale": 9}, {"chunk_length": 21}], ids=lambda s: next(iter(s))
)
def test_when_backend_encoder_or_chunk_settings_change_then_a_new_version_without_a_new_review(media, tmp_path, setting):
    timeline = _timeline(tmp_path / "cut.otio", [_clip("sh010", media[1], 0, 24, total=FRAMES, edit=_edit())])
    out = tmp_path / "out"
    _run(out, timeline)
    changed = _settings(**setting)
    again = _by_name(_run(out, timeline, changed))["sh010"]
    assert again["version"] == "v002"
    assert np.array_equal(_pixels(again["render"]), _fresh(tmp_path, timeline, changed)["sh010"])
    with Store.open(f"sqlite:///{out / 'studio-nova.db'}") as store:
        [shot] = store.shots()
        assert len(store.reviews(shot.id)) == 1, "the keyframes did not change: no new review"
        assert store.keyframes(shot.id)[0].version == 1


def test_when_media_is_replaced_in_place_keeping_its_mtime_then_it_is_a_new_render(media, tmp_path):
    clip_media = tmp_path / "plate.mov"
    shutil.copy2(media[1], clip_media)
    timeline = _timeline(tmp_path / "cut.otio", [_clip("sh010", clip_media, 0, 24, total=FRAMES, edit=_edit())])
    out = tmp_path / "out"
    first = _by_name(_run(out, timeline))["sh010"]
    stat = clip_media.stat()
    shutil.copyfile(media[2], clip_media)  # a restore / re-export under the same name …
    os.utime(clip_media, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # … with the old mtime kept
    again = _by_name(_run(out, timeline))["sh010"]
    assert again["version"] == "v002"
    assert np.array_equal(_pixels(again["render"]), _fresh(tmp_path, timeline)["sh010"])
    assert not np.array_equal(_pixels(again["render"]), _pixels(first["render"]))


def test_fingerprint_sees_a_change_of_the_first_or_last_mib_at_the_same_size_and_mtime(tmp_path):
    data = bytearray(os.urandom(3 * EDGE_BYTES + 123))
    path = tmp_path / "m.bin"
    path.write_bytes(data)
    stat = path.stat()
    base = file_fingerprint(path)
    seen = {base["head"] + base["tail"]}
    for offset in (0, len(data) - 1):
        changed = bytearray(data)
        changed[offset] ^= 0xFF
        path.write_bytes(changed)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        now = file_fingerprint(path)
        assert (now["size"], now["mtime_ns"]) == (base["size"], base["mtime_ns"])
        seen.add(now["head"] + now["tail"])
    assert len(seen) == 3


def test_two_cuts_in_one_folder_each_get_their_own_conformed_cut_and_renders(media, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # Two cuts with the same file and timeline name (from two folders), the same clip name and
    # another edit; a third with the same clip name on other media.
    cut_a = _timeline(tmp_path / "a" / "reel1.otio", [_clip("sh010", media[1], 0, 24, total=FRAMES, edit=_edit())])
    cut_b = _timeline(tmp_path / "b" / "reel1.otio", [_clip("sh010", media[1], 0, 24, total=FRAMES, edit=_edit(GOLD))])
    cut_c = _timeline(tmp_path / "reel2.otio", [_clip("sh010", media[2], 0, 24, total=FRAMES, edit=_edit())])
    reports = {name: _run(out, cut) for name, cut in (("a", cut_a), ("b", cut_b), ("c", cut_c))}

    conformed = [r["conformed"] for r in reports.values()]
    assert len(set(conformed)) == 3 and all(Path(c).is_file() for c in conformed)
    renders = [_by_name(r)["sh010"]["render"] for r in reports.values()]
    assert len(set(renders)) == 3, f"two cuts share a render path: {renders}"
    for name, cut in (("a", cut_a), ("b", cut_b), ("c", cut_c)):
        shot = _by_name(reports[name])["sh010"]
        assert shot["status"] == "conformed"
        assert np.array_equal(_pixels(shot["render"]), _fresh(tmp_path, cut)["sh010"]), name
        assert _linked_media(reports[name]["conformed"])["sh010"][0].endswith(Path(shot["render"]).name)
    # The first cut's conformed file still links its own render after the others ran.
    assert _linked_media(reports["a"]["conformed"])["sh010"][0].endswith(Path(renders[0]).name)


def test_the_same_shot_in_two_cuts_renders_once_and_both_link_it(media, tmp_path):
    out = tmp_path / "out"
    clip = lambda: _clip("sh010", media[1], 0, 24, total=FRAMES, edit=_edit())  # noqa: E731
    first = _by_name(_run(out, _timeline(tmp_path / "reel1.otio", [clip()])))["sh010"]
    report = _run(out, _timeline(tmp_path / "reel1_v2.otio", [clip()]))
    second = _by_name(report)["sh010"]
    assert second["status"] == "conformed" and second["render"] == first["render"]
    assert [r for r in _renders(out) if r[2] == "complete"] == [("sh010", 1, "complete")]
    assert _linked_media(report["conformed"])["sh010"][0].endswith(Path(first["render"]).name)


def test_clip_names_that_collide_with_generated_names_get_distinct_renders(media, tmp_path):
    clips = [
        ("x", media[1], 0, _edit()),
        ("x_V1-0", media[2], 0, _edit(GOLD)),
        ("x", media[1], 10, _edit(GOLD)),
        ("x/V1-0", media[2], 5, _edit()),
    ]
    timeline = _timeline(tmp_path / "cut.otio", [_clip(n, m, f, 20, total=FRAMES, edit=e) for n, m, f, e in clips])
    report = _run(tmp_path / "out", timeline)
    shots = report["shots"]
    assert [s["status"] for s in shots] == ["conformed"] * 4
    assert len({s["render"] for s in shots}) == 4, [s["render"] for s in shots]
    linked = otio.adapters.read_from_file(report["conformed"]).find_clips()
    for index, ((name, clip_media, first, edit), shot) in enumerate(zip(clips, shots)):
        alone = _timeline(tmp_path / f"alone{index}.otio", [_clip(name, clip_media, first, 20, total=FRAMES, edit=edit)])
        truth = next(iter(_fresh(tmp_path, alone).values()))
        assert np.array_equal(_pixels(shot["render"]), truth), f"clip {index} ({name}) got another clip's pixels"
        assert linked[index].media_reference.target_url.endswith(Path(shot["render"]).name)


def test_a_file_in_the_way_is_never_adopted_or_overwritten(media, tmp_path):
    out = tmp_path / "out"
    squatter = out / "renders" / "sh010" / "sh010_v001.mov"
    squatter.parent.mkdir(parents=True)
    shutil.copyfile(media[2], squatter)  # a file this store never made, 24+ frames, right size
    digest = hashlib.sha256(squatter.read_bytes()).hexdigest()
    timeline = _timeline(tmp_path / "cut.otio", [_clip("sh010", media[1], 0, FRAMES, total=FRAMES, edit=_edit())])
    shot = _by_name(_run(out, timeline))["sh010"]
    assert shot["status"] == "failed" and "in the way" in shot["error"] and str(squatter) in shot["error"]
    assert hashlib.sha256(squatter.read_bytes()).hexdigest() == digest


def test_a_master_written_before_a_crash_is_taken_back_only_by_its_own_render(media, tmp_path, monkeypatch):
    timeline = _timeline(tmp_path / "cut.otio", [_clip("sh010", media[1], 0, 24, total=FRAMES, edit=_edit())])
    out = tmp_path / "out"

    class Crash(BaseException):
        pass

    def crash(*_a, **_k):
        raise Crash  # the process dies after the master is on disk, before the store records it

    with monkeypatch.context() as patch:
        patch.setattr(Store, "finish_render", crash)
        with pytest.raises(Crash):
            _run(out, timeline)
    master = out / "renders" / "sh010" / "sh010_v001.mov"
    mtime = master.stat().st_mtime_ns
    shot = _by_name(_run(out, timeline))["sh010"]
    assert (shot["status"], shot["version"], shot["render"]) == ("conformed", "v001", str(master))
    assert master.stat().st_mtime_ns == mtime, "its own master was written again"
    assert np.array_equal(_pixels(master), _fresh(tmp_path, timeline)["sh010"])


def test_an_interrupted_render_is_not_resumed_when_its_settings_changed(media, tmp_path, monkeypatch):
    from studio_nova_plugins.propagators.flow import FlowPropagator

    timeline = _timeline(tmp_path / "cut.otio", [_clip("sh010", media[1], 0, FRAMES, total=FRAMES, edit=_edit())])
    out = tmp_path / "out"
    real = FlowPropagator.propagate
    calls = []

    class Killed(BaseException):
        pass

    def dies_on_second_chunk(self, chunk):
        calls.append(chunk.first_frame)
        if len(calls) == 2:
            raise Killed
        return real(self, chunk)

    with monkeypatch.context() as patch:
        patch.setattr(FlowPropagator, "propagate", dies_on_second_chunk)
        with pytest.raises(Killed):
            _run(out, timeline)
    assert _renders(out) == [("sh010", 1, "rendering")]
    changed = _settings(flow_preset="medium")
    shot = _by_name(_run(out, timeline, changed))["sh010"]
    assert shot["version"] == "v002"
    assert _renders(out) == [("sh010", 1, "failed"), ("sh010", 2, "complete")]
    assert np.array_equal(_pixels(shot["render"]), _fresh(tmp_path, timeline, changed)["sh010"])
