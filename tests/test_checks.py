"""`plan` checks every shot the way `run` does before it renders (workflow.checks), on real files.

Each test builds a tiny cut with a good clip beside the bad ones and asserts both halves: the bad
clip is reported by name, key and file with what to do, and the good shot still plans / renders.
Commands run in this process (`studio_nova.app.cli.app.main`), so the audit hook below sees every
file the command opens and every program it starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import imageio_ffmpeg
import numpy as np
import opentimelineio as otio
import pytest
from test_pipeline import KEYED, H, W, _clip, _timeline, _write

from studio_nova import workflow
from studio_nova.app.cli.app import main
from studio_nova.config import Settings
from studio_nova.cut.naming import shot_slug_candidates
from studio_nova.errors import (
    ConfigError,
    EditRequestError,
    KeyframeError,
    PluginError,
    StudioNovaError,
    TimelineError,
)
from studio_nova.footage.synthetic import make_scene
from studio_nova.plugin_api.editing import EditContext, Keyframe, ShotSource, check_request
from studio_nova.workflow.checks import checked_cut
from studio_nova.workflow.ingest import check_timeline

EDIT = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
FRAMES = 12


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checks")
    return _write(root / "A001.mov", make_scene(FRAMES, W, H, seed=3, noise=0.01).frames)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`studio-nova ARGS` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def plan_json(capsys, timeline: Path) -> tuple[int, dict]:
    status, out, err = cli(capsys, "plan", str(timeline), "--json")
    assert "Traceback" not in err, err
    return status, json.loads(out)


def run_json(capsys, timeline: Path, out: Path) -> tuple[int, dict]:
    status, stdout, err = cli(capsys, "run", str(timeline), "--out", str(out), "--orchestrator", "none",
                              "--auto-approve", "--json")
    assert "Traceback" not in err, err
    return status, json.loads(stdout)


def names_the_clip(message: str, name: str, key: str, file: Path | str) -> bool:
    return f"'{name}'" in message and key in message and str(file) in message


# ----------------------------------------------------------------------- 1. editor and param checks


def _bad_requests_cut(root: Path, media: Path) -> Path:
    plate = root / "plates" / "harbour.mov"  # never written: the plate is missing
    return _timeline(root / "requests.otio", [
        _clip("sh010", media, 0, FRAMES, edit=EDIT),
        _clip("sh020", media, 0, FRAMES, edit={"instruction": "x", "editor": "paintbrush-9000"}),
        _clip("sh030", media, 0, FRAMES, edit={**EDIT, "params": {"hue_shfit": 30}}),
        _clip("sh040", media, 0, FRAMES, edit={
            "kind": "background", "background": {"source": "plate", "params": {"video": str(plate)}}}),
        _clip("sh050", media, 0, FRAMES, edit={
            "kind": "background", "background": {"source": "still", "params": {"image": str(media)}},
            "matte": {"source": "telepathy"}}),
        _clip("sh060", media, 0, FRAMES, edit={"instruction": "make it blue", "editor": "flux-kontext"}),
    ])


EXPECTED = {  # clip -> (key, error class, words of the reason)
    "sh020": ("V1/1", "PluginError", "unknown editor 'paintbrush-9000'"),
    "sh030": ("V1/2", "EditRequestError", "hue_shfit"),
    "sh040": ("V1/3", "EditRequestError", "does not exist"),
    "sh050": ("V1/4", "PluginError", "unknown matte 'telepathy'"),
    "sh060": ("V1/5", "ConfigError", "STUDIO_NOVA_FLUX_KONTEXT_DIR"),
}


def test_plan_makes_the_editor_and_param_checks_run_makes_and_still_lists_the_good_shot(footage, tmp_path, capsys):
    timeline = _bad_requests_cut(tmp_path, footage)

    status, report = plan_json(capsys, timeline)

    assert status == 0, "the good shot can run"
    assert [s["name"] for s in report["shots"]] == ["sh010"]
    assert report["shots"][0]["chunks"] == [[0, FRAMES - 1]]
    problems = {p["name"]: p for p in report["problems"]}
    assert set(problems) == set(EXPECTED)
    for name, (key, kind, reason) in EXPECTED.items():
        problem = problems[name]
        assert (problem["key"], problem["type"]) == (key, kind), problem
        assert reason in problem["error"], problem["error"]
        assert names_the_clip(problem["error"], name, key, problem["path"]), problem["error"]
    assert problems["sh040"]["path"] == str(tmp_path / "plates" / "harbour.mov")  # the file at fault
    assert problems["sh020"]["path"] == str(footage)  # else the clip's media
    assert "name an installed editor" in problems["sh020"]["error"]  # and what to do

    # The run refuses exactly these, with the same words, and renders the good shot.
    status, result = run_json(capsys, timeline, tmp_path / "out")
    assert status == 0
    outcomes = {s["name"]: s for s in result["shots"]}
    assert outcomes["sh010"]["status"] == "conformed" and Path(outcomes["sh010"]["render"]).is_file()
    for name in EXPECTED:
        assert outcomes[name]["status"] == "failed"
        assert outcomes[name]["error"] == problems[name]["error"]


def test_plan_of_a_cut_where_nothing_can_run_exits_1_and_lists_every_problem(footage, tmp_path, capsys):
    timeline = _timeline(tmp_path / "none.otio", [
        _clip("sh020", footage, 0, FRAMES, edit={"instruction": "x", "editor": "paintbrush-9000"}),
        _clip("sh030", footage, 0, FRAMES, edit={**EDIT, "params": {"gain": -1}}),
    ])
    status, report = plan_json(capsys, timeline)
    assert status == 1
    assert report["shots"] == [] and [p["key"] for p in report["problems"]] == ["V1/0", "V1/1"]
    assert "gain must be >= 0.0" in report["problems"][1]["error"]


def test_media_whose_size_cannot_be_encoded_is_refused_by_plan_and_run(footage, tmp_path, capsys):
    wide = tmp_path / "A002_wide.mov"  # our writer refuses this size, a camera or a VFX vendor may not
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "color=c=gray:s=16400x8:r=25", "-frames:v", "3", "-c:v", "prores_ks", str(wide)], check=True)
    timeline = _timeline(tmp_path / "wide.otio", [
        _clip("sh010", footage, 0, FRAMES, edit=EDIT),
        _clip("sh020", wide, 0, 3, edit=EDIT),
    ])
    status, report = plan_json(capsys, timeline)
    assert status == 0 and [s["name"] for s in report["shots"]] == ["sh010"]
    [problem] = report["problems"]
    assert problem["type"] == "MediaError" and "16400×8" in problem["error"]
    assert names_the_clip(problem["error"], "sh020", "V1/1", wide)

    status, result = run_json(capsys, timeline, tmp_path / "out")
    outcomes = {s["key"]: s for s in result["shots"]}
    assert status == 0 and outcomes["V1/0"]["status"] == "conformed"
    assert outcomes["V1/1"]["status"] == "failed" and "16400×8" in outcomes["V1/1"]["error"]


# ----------------------------------------------------------------------------- 2. clip names


def test_clips_without_a_usable_name_render_named_by_their_place_in_the_cut(footage, tmp_path, capsys):
    timeline = _timeline(tmp_path / "names.otio", [
        _clip("", footage, 0, FRAMES, edit=EDIT),
        _clip("   ", footage, 0, 6, total=FRAMES, edit=EDIT),
        _clip("???", footage, 2, 6, total=FRAMES, edit=EDIT),
        _clip("sh040", footage, 1, 8, total=FRAMES, edit=EDIT),  # each its own range: its own render
        _clip("", tmp_path / "gone.mov", 0, FRAMES, edit=EDIT),
    ])
    status, report = plan_json(capsys, timeline)
    assert status == 0
    assert [(s["name"], s["key"]) for s in report["shots"]] == [
        ("V1_0", "V1/0"), ("V1_1", "V1/1"), ("???", "V1/2"), ("sh040", "V1/3")]
    [gone] = report["problems"]
    assert gone["name"] == "V1_4" and "V1/4" in gone["error"] and "gone.mov" in gone["error"]

    status, result = run_json(capsys, timeline, tmp_path / "out")
    assert status == 0
    outcomes = {s["key"]: s for s in result["shots"]}
    for key in ("V1/0", "V1/1", "V1/2", "V1/3"):
        assert outcomes[key]["status"] == "conformed", outcomes[key]
    folders = {key: Path(outcomes[key]["render"]).parent.name for key in ("V1/0", "V1/1", "V1/2", "V1/3")}
    assert folders == {"V1/0": "V1_0", "V1/1": "V1_1", "V1/2": "V1_2", "V1/3": "sh040"}
    assert outcomes["V1/4"]["status"] == "failed" and "V1/4" in outcomes["V1/4"]["error"]
    # The conformed cut keeps the clips' own (empty) names; only the renders are relinked.
    conformed = otio.adapters.read_from_file(result["conformed"]).video_tracks()[0]
    assert [c.name for c in conformed][:2] == ["", "   "]
    assert Path(conformed[0].media_reference.target_url).name == Path(outcomes["V1/0"]["render"]).name


def test_shot_folder_names_fall_back_to_the_key_and_never_repeat():
    assert shot_slug_candidates("???", "V1/2") == ["V1_2"]
    assert shot_slug_candidates("..", "V2/0", "reel") == ["V2_0", "V2_0_reel"]
    assert shot_slug_candidates("sh010", "V1/3", "reel")[:2] == ["sh010", "sh010_V1-3"]


# ------------------------------------------------------------------------------- 3. media roots


@contextmanager
def watching() -> Iterator[list[str]]:
    """Every path opened or listed and every command line started while inside, as text."""
    seen: list[str] = []
    active = [True]

    def hook(event: str, args: tuple) -> None:
        if not active[0]:
            return
        if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            seen.append(os.fsdecode(args[0]))
        elif event == "subprocess.Popen" and len(args) > 1:
            seen.append(" ".join(os.fsdecode(a) for a in (args[1] or []) if isinstance(a, (str, bytes, os.PathLike))))

    _HOOKS.append(hook)
    try:
        yield seen
    finally:
        active[0] = False
        _HOOKS.remove(hook)


_HOOKS: list = []
sys.addaudithook(lambda event, args: [hook(event, args) for hook in list(_HOOKS)])


@contextmanager
def no_hang(seconds: int = 120) -> Iterator[None]:
    """Fail instead of hanging (a pipe opened as media would block for ever)."""

    def fail(*_):
        raise TimeoutError(f"still running after {seconds} s: something blocked")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_media_roots_refuse_every_path_outside_before_anything_opens_it(footage, tmp_path, capsys, monkeypatch):
    roots, other = tmp_path / "footage", tmp_path / "plates-ok"
    outside = tmp_path / "outside"
    for folder in (roots, other, outside):
        folder.mkdir()
    good = roots / "A001.mov"
    os.link(footage, good)
    secret = _write(outside / "SECRET.mov", make_scene(FRAMES, W, H, seed=4).frames)
    (roots / "link.mov").symlink_to(secret)
    (roots / "cuts").mkdir()
    timeline = _timeline(roots / "cuts" / "roots.otio", [
        _clip("sh010", good, 0, FRAMES, edit=EDIT),
        _clip("sh020", f"file://{roots}/../outside/SECRET.mov", 0, FRAMES, edit=EDIT),
        _clip("sh030", "../../outside/SECRET.mov", 0, FRAMES, edit=EDIT),
        _clip("sh040", roots / "link.mov", 0, FRAMES, edit=EDIT),
        _clip("sh050", good, 0, FRAMES, edit={
            "kind": "background", "background": {"source": "plate", "params": {"video": "../../outside/SECRET.mov"}}}),
        _clip("sh060", good, 0, FRAMES, edit={
            "instruction": "paint", "editor": "artist", "params": {"dir": str(outside)}}),
    ])
    monkeypatch.setenv("STUDIO_NOVA_MEDIA_ROOTS", f"{roots}{os.pathsep}{other}")

    with watching() as seen:
        status, report = plan_json(capsys, timeline)
        run_status, result = run_json(capsys, timeline, tmp_path / "out")

    assert not [p for p in seen if str(outside) in p], "a path outside the media roots was opened"
    assert status == 0 and [s["name"] for s in report["shots"]] == ["sh010"]
    problems = {p["name"]: p for p in report["problems"]}
    assert set(problems) == {"sh020", "sh030", "sh040", "sh050", "sh060"}
    for name, problem in problems.items():
        assert "outside the media roots" in problem["error"] and "STUDIO_NOVA_MEDIA_ROOTS" in problem["error"]
        assert f"'{name}'" in problem["error"] and problem["key"] in problem["error"]
        assert str(outside) in problem["error"], "the file, resolved, is named"
    assert "link.mov" in problems["sh040"]["error"], "a symlink is reported as named and as resolved"
    assert "params background.params.video" in problems["sh050"]["error"]
    outcomes = {s["name"]: s for s in result["shots"]}
    assert run_status == 0 and outcomes["sh010"]["status"] == "conformed"
    assert all(outcomes[n]["status"] == "failed" for n in problems)


def test_without_media_roots_system_files_and_pipes_are_refused_before_ffmpeg(footage, tmp_path, capsys):
    pipe = tmp_path / "feed.mov"
    os.mkfifo(pipe)
    timeline = _timeline(tmp_path / "system.otio", [
        _clip("sh010", footage, 0, FRAMES, edit=EDIT),
        _clip("sh020", f"file://{tmp_path}/../../../../../../etc/passwd", 0, FRAMES, edit=EDIT),
        _clip("sh030", "../" * 12 + "etc/shadow", 0, FRAMES, edit=EDIT),
        _clip("sh040", pipe, 0, FRAMES, edit=EDIT),
    ])
    with no_hang(), watching() as seen:
        status, report = plan_json(capsys, timeline)
    assert not [p for p in seen if "/etc/passwd" in p or "/etc/shadow" in p or str(pipe) in p]
    assert status == 0 and [s["name"] for s in report["shots"]] == ["sh010"]
    problems = {p["name"]: p["error"] for p in report["problems"]}
    assert "'/etc/passwd'" in problems["sh020"] and "system folder" in problems["sh020"]
    assert "V1/1" in problems["sh020"] and "etc/passwd" in problems["sh020"]
    assert "'/etc/shadow'" in problems["sh030"] and "system folder" in problems["sh030"]
    assert "pipe" in problems["sh040"] and str(pipe) in problems["sh040"]


def test_media_roots_setting_reads_a_path_list_or_json_and_refuses_relative_folders(tmp_path, monkeypatch):
    from studio_nova.config import load_settings

    monkeypatch.setenv("STUDIO_NOVA_MEDIA_ROOTS", f"{tmp_path}{os.pathsep}{tmp_path}/a/..{os.pathsep}")
    assert load_settings().media_roots == [tmp_path.resolve(), tmp_path.resolve()]
    monkeypatch.setenv("STUDIO_NOVA_MEDIA_ROOTS", json.dumps([str(tmp_path)]))
    assert load_settings().media_roots == [tmp_path.resolve()]
    monkeypatch.setenv("STUDIO_NOVA_MEDIA_ROOTS", "footage")
    with pytest.raises(ConfigError, match="STUDIO_NOVA_MEDIA_ROOTS: .*absolute"):
        load_settings()


# --------------------------------------------------------------------- 4. malformed default params


@pytest.mark.parametrize("value", ['{"hue_shift": 30', "[1, 2]", "hue_shift=30"])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_malformed_default_params_is_one_line_naming_the_variable(footage, tmp_path, capsys, monkeypatch,
                                                                   value, command):
    timeline = _timeline(tmp_path / "cut.otio", [_clip("sh010", footage, 0, FRAMES, edit=EDIT)])
    monkeypatch.setenv("STUDIO_NOVA_DEFAULT_PARAMS", value)
    out = tmp_path / "out"
    extra = ["--out", str(out), "--orchestrator", "none"] if command == "run" else []

    status, stdout, err = cli(capsys, command, str(timeline), *extra)
    assert status == 1 and stdout == ""
    [line] = err.strip().splitlines()
    assert line.startswith("studio-nova: error: invalid setting: STUDIO_NOVA_DEFAULT_PARAMS: ")
    assert "JSON" in line and value in line
    status, stdout, _ = cli(capsys, command, str(timeline), *extra, "--json")
    assert status == 1 and json.loads(stdout)["error"]["type"] == "ConfigError"
    assert not out.exists()


# -------------------------------------------------------------------- 5. the timeline, before anything


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("missing.otio", None, "not found"),
    ("garbage.otio", "{ not json", "cannot read as otio_json"),
    ("plain.otio", "no requests", "no clip carries an edit request"),
])
def test_check_timeline_refuses_a_cut_that_cannot_run_without_opening_media(footage, tmp_path, name, content, reason):
    path = tmp_path / name
    if content == "no requests":
        _timeline(path, [_clip("sh010", footage, 0, FRAMES)])
    elif content is not None:
        path.write_text(content)
    with watching() as seen, pytest.raises(TimelineError, match=reason) as caught:
        check_timeline(path, Settings())
    assert caught.value.path == path and name in str(caught.value)
    assert not [p for p in seen if p.endswith(".mov")], "no media is opened"


def test_check_timeline_accepts_a_cut_whose_clips_have_problems(footage, tmp_path):
    path = _timeline(tmp_path / "cut.otio", [_clip("sh010", tmp_path / "gone.mov", 0, FRAMES, edit=EDIT)])
    assert check_timeline(path, Settings()) == path


def test_run_on_a_timeline_that_does_not_exist_creates_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, err = cli(capsys, "run", str(tmp_path / "nope.otio"), "--out", str(out), "--orchestrator",
                              "none", "--json")
    assert status == 1 and json.loads(stdout)["error"]["type"] == "TimelineError" and "nope.otio" in err
    assert not out.exists()


# ---------------------------------------------------------------- the editors' check_params contract


def _keyframes() -> list[Keyframe]:
    return [Keyframe(0, np.full((8, 8, 3), 0.5, np.float32))]


@pytest.mark.parametrize(("editor", "params", "instruction", "error"), [
    ("recolor", {"gain": -1}, "x", EditRequestError),
    ("recolor", {}, "make it sparkle", EditRequestError),
    ("artist", {"dir": 3}, "", EditRequestError),
    ("artist", {"dir": "/tmp/x", "feather": 1000}, "", EditRequestError),
    ("artist", {"dir": "/nowhere/painted"}, "", KeyframeError),
    ("background", {"background": {"source": "nowhere"}}, "", PluginError),
    ("background", {"background": {"source": "still", "params": {}}}, "", EditRequestError),
    ("flux-kontext", {"steps": 0, "model_dir": "/nowhere"}, "blue", EditRequestError),
    ("flux-kontext", {}, "blue", ConfigError),
    ("qwen-image-edit", {"model_dir": "/nowhere"}, "blue", ConfigError),
])
def test_an_editors_check_params_refuses_what_its_edit_refuses(footage, tmp_path, editor, params, instruction, error):
    from studio_nova.plugin_api.registry import load_editor, plugin_class

    settings = Settings()
    with pytest.raises(error) as checked:
        check_request(plugin_class("studio_nova.editors", editor), params, instruction=instruction, settings=settings,
                      keyframes=[0])
    context = EditContext(shot="sh010", keyframes=_keyframes(), instruction=instruction, params=params,
                          source=ShotSource(footage, 0, 0, tmp_path), settings=settings)
    with pytest.raises(StudioNovaError) as edited:
        load_editor(editor, settings).edit(context)
    assert type(checked.value) is type(edited.value)
    assert checked.value.message.split(":")[0] in edited.value.message or checked.value.message == edited.value.message


def test_check_params_accepts_what_edit_accepts_and_editors_without_one_are_not_checked(tmp_path):
    settings = Settings()
    from studio_nova.plugin_api.registry import plugin_class

    assert check_request(plugin_class("studio_nova.editors", "recolor"), KEYED, instruction="x", settings=settings)
    assert check_request(plugin_class("studio_nova.editors", "recolor"), {}, instruction="red to blue",
                         settings=settings)
    assert check_request(plugin_class("studio_nova.editors", "artist"), {"dir": str(tmp_path)}, instruction="",
                         settings=settings)

    class Plain:
        name = "plain"

    assert check_request(Plain, {"anything": 1}, instruction="", settings=settings) is False


def test_checked_cut_keeps_the_good_shots_and_orders_problems_as_the_cut(footage, tmp_path):
    timeline = _bad_requests_cut(tmp_path, footage)
    cut = checked_cut(timeline, Settings())
    assert [s.name for s in cut.shots] == ["sh010"]
    assert [p.key for p in cut.problems] == ["V1/1", "V1/2", "V1/3", "V1/4", "V1/5"]
    assert all(p.error.shot == p.name and p.error.details["key"] == p.key for p in cut.problems)


def test_an_editor_gone_by_keyframe_time_is_reported_naming_the_shot(footage, tmp_path):
    timeline = _timeline(tmp_path / "cut.otio", [_clip("sh010", footage, 0, FRAMES, edit=EDIT)])
    ws = workflow.Workspace.open(tmp_path / "out", Settings())
    try:
        [shot_id] = workflow.ingest_cut(ws, timeline).shot_ids
        shot = ws.store.shot(shot_id)
        ws.store.upsert_shot(
            shot.timeline_id, key=shot.key, name=shot.name, media=shot.media, first_frame=shot.first_frame,
            last_frame=shot.last_frame, rate=shot.rate, width=shot.width, height=shot.height,
            bit_depth=shot.bit_depth, edit={**shot.edit, "editor": "uninstalled"}, fingerprint="changed",
        )
        with pytest.raises(PluginError, match=r"clip 'sh010' \(V1/0\): unknown editor 'uninstalled'") as caught:
            workflow.edit_keyframes(ws, shot_id)
        assert caught.value.shot == "sh010"
    finally:
        ws.close()


# ------------------------------------------------------------------------ variable frame rate


def _vfr_movie(path: Path) -> Path:
    """30 frames: the first 15 shown 1/25 s apart, the last 15 1/50 s apart (0.9 s in all)."""
    pts = "if(lt(N,15),N/25,15/25+(N-15)/50)/TB"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=50",
                    "-frames:v", "30", "-vf", f"setpts='{pts}'", "-fps_mode", "passthrough", "-enc_time_base",
                    "1/1000", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-video_track_timescale", "1000", str(path)],
                   check=True)
    return path


@pytest.mark.parametrize("policy", ["refuse", "resample"])
def test_variable_frame_rate_media_is_refused_or_numbered_at_the_cuts_rate(footage, tmp_path, capsys, monkeypatch,
                                                                           policy):
    phone = _vfr_movie(tmp_path / "PHONE.mp4")
    timeline = _timeline(tmp_path / "vfr.otio", [
        _clip("sh010", footage, 0, FRAMES, edit=EDIT),
        _clip("sh020", phone, 0, 20, total=20, edit=EDIT),
    ])
    monkeypatch.setenv("STUDIO_NOVA_VFR", policy)
    status, report = plan_json(capsys, timeline)
    assert status == 0
    shots = {s["name"]: s for s in report["shots"]}
    if policy == "refuse":
        assert set(shots) == {"sh010"}
        [problem] = report["problems"]
        assert names_the_clip(problem["error"], "sh020", "V1/1", phone)
        assert "variable frame rate" in problem["error"] and "STUDIO_NOVA_VFR=resample" in problem["error"]
    else:
        assert report["problems"] == [] and set(shots) == {"sh010", "sh020"}
        # numbered at the cut's 25 fps by its timestamps: 0.9 s of it is 22 or 23 frames, of which the clip uses 20
        assert (shots["sh020"]["rate"], shots["sh020"]["first_frame"], shots["sh020"]["last_frame"]) == (25, 0, 19)


def test_plan_lists_an_artist_shots_keyframes_still_to_paint_and_plans_it_once_painted(footage, tmp_path, capsys):
    from studio_nova.media.keyframe_files import write_png

    paint = tmp_path / "paint" / "sh020"
    paint.mkdir(parents=True)
    edit = {"instruction": "paint", "editor": "artist", "params": {"dir": str(paint)}}
    timeline = _timeline(tmp_path / "artist.otio", [
        _clip("sh010", footage, 0, FRAMES, edit=EDIT),
        _clip("sh020", footage, 0, FRAMES, edit=edit),
    ])
    write_png(paint / "000000.png", np.full((H, W, 3), 0.5, np.float32), 8)
    status, report = plan_json(capsys, timeline)
    [problem] = report["problems"]
    assert status == 0 and problem["type"] == "KeyframeError" and problem["path"] == str(paint)
    assert "2 of 3 keyframes still to paint" in problem["error"] and "000010.png, 000011.png" in problem["error"]
    assert names_the_clip(problem["error"], "sh020", "V1/1", paint)

    for frame in (10, 11):
        write_png(paint / f"{frame:06d}.png", np.full((H, W, 3), 0.5, np.float32), 8)
    status, report = plan_json(capsys, timeline)
    assert status == 0 and report["problems"] == [] and [s["name"] for s in report["shots"]] == ["sh010", "sh020"]
