"""End-to-end behaviour of `run` on real media, a real store and the real plugins (in-process)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest

from studio_nova import workflow
from studio_nova.config import Settings
from studio_nova.footage.synthetic import make_scene
from studio_nova.media.decode import read_frames
from studio_nova.media.encode import VideoWriter
from studio_nova.media.frames import to_float
from studio_nova.media.probe import probe
from studio_nova.render import qc
from studio_nova.store import Store
from studio_nova_plugins.editors.recolor import recolor_image

W, H = 128, 72
RATE = Fraction(25)
KEYED = {"key": {"hue": 0, "width": 40, "min_saturation": 0.35, "softness": 15}, "hue_shift": 130}


def _write(path: Path, frames: np.ndarray, codec: str = "prores_hq", timecode: str | None = None) -> Path:
    with VideoWriter(path, width=W, height=H, rate=RATE, codec=codec, input_dtype=np.uint8, timecode=timecode) as w:
        for f in frames:
            w.write(f)
    return path


def _clip(name, media, first, count, *, media_start=0, total=None, edit=None, rate=25.0):
    clip = otio.schema.Clip(
        name=name,
        media_reference=otio.schema.ExternalReference(
            target_url=str(media),
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(media_start, rate), otio.opentime.RationalTime(total or count, rate)
            ),
        ),
        source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(media_start + first, rate), otio.opentime.RationalTime(count, rate)
        ),
    )
    if edit is not None:
        clip.metadata["studio_nova"] = {"edit": edit}
    return clip


def _timeline(path: Path, clips) -> Path:
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.extend(clips)
    timeline = otio.schema.Timeline(name=path.stem)
    timeline.tracks.append(track)
    otio.adapters.write_to_file(timeline, str(path))
    return path


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    scene = make_scene(110, W, H, seed=5, noise=0.01)
    media = _write(root / "A001.mov", scene.frames, timecode="01:00:00:00")
    return root, media, scene


def _cut(root: Path, media: Path, name="cut.otio", editor_params=KEYED) -> Path:
    tc = 90000
    edit = {"instruction": "red to teal", "editor": "recolor", "params": editor_params}
    return _timeline(
        root / name,
        [
            _clip("sh010", media, 5, 100, media_start=tc, total=110, edit=edit),
            _clip("sh020", media, 0, 20, media_start=tc, total=110),
        ],
    )


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run(ws, timeline, **kw):
    return workflow.run_cut(ws, timeline, **kw).to_dict()


def test_run_edits_the_marked_shot_against_its_truth_and_conforms_the_cut(footage, tmp_path):
    root, media, _ = footage
    timeline = _cut(root, media)
    before = _snapshot(root)
    ws = workflow.Workspace.open(tmp_path / "out", Settings())
    result = _run(ws, timeline, auto_approve=True)
    ws.close()
    assert _snapshot(root) == before, "nothing outside --out may change"

    [shot] = result["shots"]
    assert shot["status"] == "conformed" and shot["first_frame"] == 5 and shot["last_frame"] == 104
    info = probe(Path(shot["render"]))
    assert (info.frame_count, info.rate, info.width, info.height) == (100, RATE, W, H)
    assert info.timecode == "01:00:00:05"
    assert shot["qc"]["untouched_exact"] == 1.0 and shot["qc"]["chunks"] == 2
    assert Path(shot["proxy"]).exists()

    # Frame i of the render is source frame first_frame + i; compare with the truth.
    src_info = probe(media)
    errs = []
    for src, out in zip(read_frames(src_info, 5, 104), read_frames(info, 0, 99)):
        truth = recolor_image(to_float(src), KEYED)[0]
        errs.append(qc.psnr(to_float(out), truth))
    assert min(errs) >= 30.0, f"worst frame {min(errs):.1f} dB"

    conformed = otio.adapters.read_from_file(result["conformed"])
    original = otio.adapters.read_from_file(str(timeline))
    for a, b in zip(original.video_tracks()[0], conformed.video_tracks()[0]):
        assert a.duration() == b.duration() and a.source_range == b.source_range
    edited = conformed.video_tracks()[0][0]
    assert Path(edited.media_reference.target_url.replace("file://", "")).name.endswith("_v001.mov")
    assert edited.metadata["studio_nova"]["render"]["version"] == 1
    assert otio.adapters.write_to_string(conformed.video_tracks()[0][1]) == otio.adapters.write_to_string(
        original.video_tracks()[0][1]
    )


def test_second_run_renders_nothing_already_rendered(footage, tmp_path):
    root, media, _ = footage
    timeline = _cut(root, media, "again.otio")
    ws = workflow.Workspace.open(tmp_path / "out", Settings())
    first = _run(ws, timeline, auto_approve=True)
    render = Path(first["shots"][0]["render"])
    stamp = render.stat().st_mtime_ns
    second = _run(ws, timeline, auto_approve=True)
    ws.close()
    assert second["shots"][0]["render"] == str(render)
    assert render.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in render.parent.iterdir()) == ["sh010_v001.mov", "sh010_v001_proxy.mp4"]


def test_review_gate_reject_re_edits_with_new_instruction_then_approve_renders(footage, tmp_path):
    root, media, _ = footage
    timeline = _cut(root, media, "review.otio")
    ws = workflow.Workspace.open(tmp_path / "out", Settings())
    waiting = _run(ws, timeline)
    assert [s["status"] for s in waiting["shots"]] == ["in_review"]
    assert waiting["shots"][0]["render"] is None

    workflow.review(ws, "sh010", "rejected", reviewer="ana", notes="too blue", new_instruction="red to green")
    again = _run(ws, timeline)
    assert again["shots"][0]["status"] == "in_review"
    shot = ws.store.find_shots("sh010")[0]
    assert ws.store.keyframes(shot.id)[0].version == 2
    assert ws.store.keyframes(shot.id, version=1), "the rejected version is kept"
    assert ws.store.keyframes(shot.id)[0].instruction == "red to green"
    [rejection] = ws.store.reviews(shot.id)
    assert (rejection.decision, rejection.reviewer, rejection.notes) == ("rejected", "ana", "too blue")

    workflow.review(ws, "V1/0", "approved", reviewer="ben")
    done = _run(ws, timeline)
    ws.close()
    assert done["shots"][0]["status"] == "conformed"


def test_interrupted_render_continues_at_the_first_unfinished_chunk(footage, tmp_path):
    root, media, _ = footage
    timeline = _cut(root, media, "resume.otio")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "studio_nova.app.cli", "run", str(timeline), "--out", str(out), "--auto-approve",
           "--orchestrator", "none", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = out / "studio-nova.db"
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            store = Store.open(f"sqlite:///{db}")
            try:
                renders = [c for s in store.shots() for c in _chunks_of(store, s.id)]
            finally:
                store.close()
            if any(c.status == "done" for c in renders):
                proc.kill()
                killed = True
                break
        time.sleep(0.05)
    proc.wait()
    if not killed:
        pytest.skip("the render finished before it could be interrupted")

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["shots"][0]["status"] == "conformed"
    store = Store.open(f"sqlite:///{db}")
    chunks = _chunks_of(store, store.shots()[0].id)
    store.close()
    assert [c.attempts for c in chunks][0] == 1, "the finished chunk was not rendered again"
    assert probe(Path(report["shots"][0]["render"])).frame_count == 100


def _chunks_of(store: Store, shot_id: int):
    render = store.latest_render(shot_id, complete_only=False)
    return store.chunks(render.id) if render else []


def test_bad_clips_fail_alone_and_the_rest_renders(footage, tmp_path):
    root, media, _ = footage
    edit = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
    timeline = _timeline(
        root / "bad.otio",
        [
            _clip("missing", root / "nope.mov", 0, 10, edit=edit),
            _clip("outside", media, 100, 50, total=110, edit=edit),
            _clip("unknown_editor", media, 0, 10, total=110, edit={"instruction": "x", "editor": "nope"}),
            _clip("good", media, 0, 12, total=110, edit=edit),
        ],
    )
    before = _snapshot(root)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "studio_nova.app.cli", "run", str(timeline), "--out", str(out), "--auto-approve",
         "--orchestrator", "none", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    shots = {s["name"]: s for s in json.loads(result.stdout)["shots"]}
    assert shots["good"]["status"] == "conformed"
    assert shots["missing"]["status"] == "failed" and "nope.mov" in shots["missing"]["error"]
    assert shots["outside"]["status"] == "failed" and "outside" in shots["outside"]["error"]
    assert shots["unknown_editor"]["status"] == "failed" and "unknown editor 'nope'" in shots["unknown_editor"]["error"]
    assert _snapshot(root) == before


def test_when_nothing_can_run_the_exit_status_says_so(footage, tmp_path):
    root, _, _ = footage
    empty = _timeline(root / "empty.otio", [])
    missing = _timeline(
        root / "all_missing.otio", [_clip("gone", root / "gone.mov", 0, 5, edit={"instruction": "x", "editor": "recolor"})]
    )
    for timeline, needle in ((empty, "no clip carries an edit request"), (missing, "gone.mov")):
        result = subprocess.run(
            [sys.executable, "-m", "studio_nova.app.cli", "run", str(timeline), "--out", str(tmp_path / timeline.stem),
             "--orchestrator", "none", "--json"],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 1
        assert needle in result.stdout + result.stderr


@pytest.mark.postgres
def test_run_with_a_postgresql_store_then_rerun_renders_nothing(footage, tmp_path, postgres_database):
    root, media, _ = footage
    timeline = _cut(root, media, "pg.otio")
    settings = Settings(database_url=postgres_database)
    ws = workflow.Workspace.open(tmp_path / "out", settings)
    try:
        assert ws.store.backend == "postgresql"
        first = _run(ws, timeline, auto_approve=True)
        second = _run(ws, timeline, auto_approve=True)
    finally:
        ws.close()
    assert first["shots"][0]["status"] == "conformed"
    assert second["shots"][0]["render"] == first["shots"][0]["render"]
    assert not (tmp_path / "out" / "studio-nova.db").exists(), "the PostgreSQL store was used"
