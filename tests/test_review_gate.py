"""The review gate without a Prefect server: the page a reviewer sees, the rules an answer must
follow, recording it once, expiry, the CLI's side of the gate, and the deployment definitions."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_pipeline import KEYED, H, W, _clip, _timeline, _write

from studio_nova import workflow
from studio_nova.app.server import free_port
from studio_nova.config import Settings, load_settings
from studio_nova.errors import ConfigError, ReviewError
from studio_nova.footage.synthetic import make_scene
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.keyframe_files import read_png
from studio_nova.media.probe import probe
from studio_nova.render import qc
from studio_nova.workflow import review_gate
from studio_nova.workflow.review_page import PREVIEW_SIDE, Still, data_uri, review_markdown, stills_markdown
from studio_nova_plugins.editors.recolor import recolor_image

REPO = Path(__file__).resolve().parents[1]
DATA_URI = re.compile(r"!\[([^\]]*)\]\((data:image/jpeg;base64,[A-Za-z0-9+/=]+)\)")


def _decode(uri: str) -> np.ndarray:
    payload = uri.split(",", 1)[1]
    return to_float(np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")))


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    samples = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return to_float(np.asarray(Image.fromarray(samples).resize(size, Image.Resampling.LANCZOS)))


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    scene = make_scene(40, W, H, seed=3, noise=0.01)
    media = _write(root / "C001.mov", scene.frames)
    edit = {"instruction": "red to teal | <b>now</b>", "editor": "recolor", "params": KEYED, "seed": 7}
    timeline = _timeline(
        root / "gate.otio",
        [_clip("sh010", media, 0, 21, total=40, edit=edit), _clip("sh020", media, 21, 19, total=40, edit=edit)],
    )
    return root, media, timeline


@pytest.fixture
def waiting(cut, tmp_path):
    """A workspace whose two shots wait for review (keyframes v001 edited, nothing decided)."""
    _, _, timeline = cut
    ws = workflow.Workspace.open(tmp_path / "out", Settings())
    report = workflow.run_cut(ws, timeline)
    assert [s["status"] for s in report.shots] == ["in_review", "in_review"]
    yield ws
    ws.close()


# ---------------------------------------------------------------------------------- the page


def test_review_page_shows_each_keyframe_original_and_edited_as_inline_images(waiting):
    shot = waiting.store.find_shots("sh010")[0]
    keyframes = waiting.store.keyframes(shot.id)
    assert [k.source_frame for k in keyframes] == [0, 10, 20]
    markdown = review_markdown(review_gate.review_page(waiting.store, shot.id, timeout_hours=48))

    images = DATA_URI.findall(markdown)
    assert [alt for alt, _ in images] == ["original 0", "edited 0", "original 10", "edited 10", "original 20", "edited 20"]
    assert "/" + Path(keyframes[0].edited_path).name not in markdown, "no file paths: the browser cannot open them"
    for k, (_, original), (_, edited) in zip(keyframes, images[0::2], images[1::2]):
        shown_original, shown_edited = _decode(original), _decode(edited)
        truth_original, truth_edited = read_png(k.original_path), read_png(k.edited_path)
        assert shown_original.shape == truth_original.shape  # 128x72 is below the preview size
        assert np.abs(shown_original - truth_original).mean() < 0.02
        assert np.abs(shown_edited - truth_edited).mean() < 0.02
        # the pair really differs where the edit is: a reviewer sees the change
        assert np.abs(truth_edited - truth_original).max() > 0.3
    assert "editor `recolor`" in markdown and "seed 7" in markdown
    # the cut's instruction is shown as text, never as table syntax or HTML
    assert "red to teal &#124; &lt;b&gt;now&lt;/b&gt;" in markdown and "<b>" not in markdown


def test_large_keyframes_are_downscaled_so_a_page_stays_small():
    yy, xx = np.mgrid[0:1080, 0:1920].astype(np.float32)
    frame = np.stack([xx / 1919, yy / 1079, 0.5 + 0.5 * np.sin(xx / 40) * np.cos(yy / 50)], axis=-1)
    uri = data_uri(frame)
    shown = _decode(uri)
    assert shown.shape == (180, PREVIEW_SIDE, 3)
    assert np.abs(shown - _resized(frame, (PREVIEW_SIDE, 180))).mean() < 0.02
    assert len(uri) * 20 < 1_000_000, "ten keyframe pairs must stay under a megabyte"
    with pytest.raises(ValueError, match="H x W x 3"):
        data_uri(frame[..., 0])


def test_stills_markdown_puts_before_and_after_side_by_side():
    before = np.zeros((72, 128, 3), np.float32)
    after = np.ones((72, 128, 3), np.float32)
    text = stills_markdown([Still("sh010", "v002", 12, before, after)])
    (_, b), (_, a) = DATA_URI.findall(text)
    assert _decode(b).mean() < 0.02 and _decode(a).mean() > 0.98
    assert "| sh010 | v002 | 12 |" in text
    assert stills_markdown([]) == "No rendered shots yet.\n"


# ------------------------------------------------------------------------------ the answers


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (review_gate.Answer("approve", "ana"), None),
        (review_gate.Answer("reject", "ana", notes="too blue", new_instruction="red to green", new_seed=3), None),
        (review_gate.Answer("maybe", "ana"), "decision must be"),
        (review_gate.Answer("approve", "  "), "reviewer"),
        (review_gate.Answer("reject", "ana"), None),  # notes are welcome, not required
        (review_gate.Answer("reject", "ana", notes="x", new_seed=-1), "new_seed must be 0 or more"),
        (review_gate.Answer("approve", "ana", new_instruction="red to green"), "only applies to a rejection"),
    ],
)
def test_when_an_answer_breaks_a_rule_then_the_reason_is_given_to_ask_again(answer, problem):
    found = review_gate.check_answer(answer)
    assert found is None if problem is None else problem in found


def test_an_answer_is_recorded_once_and_only_on_the_version_it_was_given_for(waiting):
    store = waiting.store
    shot = store.find_shots("sh010")[0]
    answer = review_gate.Answer("reject", "ana", notes="too teal", new_instruction="red to green", new_seed=4)
    assert review_gate.record_answer(store, shot.id, 1, answer).status == "rejected"
    # a resumed run replays the same answer: nothing more is recorded
    assert review_gate.record_answer(store, shot.id, 1, answer).status == "rejected"
    [review] = store.reviews(shot.id)
    assert (review.decision, review.reviewer, review.notes, review.new_instruction, review.new_seed, review.keyframe_version) == (
        "rejected", "ana", "too teal", "red to green", 4, 1
    )
    # the re-edit makes v002 with the new instruction and seed; a late answer for v001 is ignored
    assert workflow.prepare_shot(waiting, shot.id).status == "in_review"
    v2 = store.keyframes(shot.id)
    assert {k.version for k in v2} == {2} and v2[0].instruction == "red to green" and v2[0].seed == 4
    assert len(store.keyframes(shot.id, version=1)) == 3, "old versions are kept"
    assert review_gate.record_answer(store, shot.id, 1, review_gate.Answer("approve", "ben")).status == "in_review"
    page = review_gate.review_page(store, shot.id, timeout_hours=48, problem="new_seed must be 0 or more, got -1")
    text = review_markdown(page)
    assert "keyframes v002" in text and "not accepted:** new_seed must be 0 or more, got -1" in text
    assert "v001 rejected by ana: too teal (new instruction: red to green) (new seed: 4)" in text
    with pytest.raises(ReviewError, match="new_seed must be 0 or more"):
        review_gate.record_answer(store, shot.id, 2, review_gate.Answer("reject", "ana", new_seed=-1))


def test_a_review_not_answered_in_time_is_reported_expired_on_the_shot(waiting, monkeypatch):
    store = waiting.store
    shot = store.find_shots("sh020")[0]
    state = review_gate.review_state(store, shot, 48)
    assert state.expires_at - state.requested_at == timedelta(hours=48) and not state.expired
    assert review_gate.review_state(store, shot, 48, now=state.requested_at + timedelta(hours=49)).expired
    store.add_review(shot.id, decision="approved", reviewer="ben")
    answered = review_gate.review_state(store, store.shot(shot.id), 48, now=state.requested_at + timedelta(hours=49))
    assert not answered.expired, "an answered review never expires"

    assert review_gate.review_timeout_hours(Settings()) == 48.0
    monkeypatch.setenv("STUDIO_NOVA_REVIEW_TIMEOUT_HOURS", "72")
    assert review_gate.review_timeout_hours(Settings()) == 72.0
    monkeypatch.setenv("STUDIO_NOVA_REVIEW_TIMEOUT_HOURS", "soon")
    with pytest.raises(ConfigError, match="STUDIO_NOVA_REVIEW_TIMEOUT_HOURS.*'soon'"):
        load_settings()
    monkeypatch.setenv("STUDIO_NOVA_REVIEW_TIMEOUT_HOURS", "0")
    with pytest.raises(ConfigError, match="STUDIO_NOVA_REVIEW_TIMEOUT_HOURS: .*positive"):
        load_settings()


# ------------------------------------------------------------------------------------- the CLI


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    environ["STUDIO_NOVA_PREFECT_PORT"] = str(free_port())  # no server answers there
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "studio_nova.app.cli", *args], capture_output=True, text=True, timeout=120, env=environ
    )


def test_cli_review_follows_the_same_rules_and_reports_expired_reviews(waiting):
    out = str(waiting.out)
    refused = _cli("review", "reject", "sh010", "--out", out, "--seed", "-1", "--json")
    assert refused.returncode == 1 and "new_seed must be 0 or more" in json.loads(refused.stdout)["error"]["message"]
    assert waiting.store.find_shots("sh010")[0].status == "in_review", "a refused answer records nothing"

    listed = json.loads(_cli("review", "list", "--out", out, "--json").stdout)["shots"]
    assert [(s["name"], s["review_expired"]) for s in listed] == [("sh010", False), ("sh020", False)]
    expired = _cli("review", "list", "--out", out, "--json", STUDIO_NOVA_REVIEW_TIMEOUT_HOURS="0.000001")
    assert [s["review_expired"] for s in json.loads(expired.stdout)["shots"]] == [True, True]

    approved = _cli("review", "approve", "V1/1", "--out", out, "--reviewer", "ben", "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout) == {"name": "sh020", "key": "V1/1", "status": "approved"}
    [review] = waiting.store.reviews(waiting.store.find_shots("sh020")[0].id)
    assert (review.decision, review.reviewer) == ("approved", "ben")


# ------------------------------------------------------------------ nightly work list and reports


def test_nightly_work_list_is_the_approved_unrendered_shots_and_reports_use_the_renders(cut, waiting):
    _, media, _ = cut
    ws = waiting
    sh010, sh020 = ws.store.find_shots("sh010")[0], ws.store.find_shots("sh020")[0]
    assert workflow.renderable_shots(ws) == []
    ws.store.add_review(sh020.id, decision="approved", reviewer="ben")
    assert workflow.renderable_shots(ws) == [sh020.id]
    workflow.render(ws, sh020.id)
    assert workflow.renderable_shots(ws) == [] and ws.store.shot(sh010.id).status == "in_review"

    [row] = workflow.qc_rows(ws)
    assert (row["shot"], row["version"], row["frames"], row["untouched_exact"]) == ("sh020", "v001", 19, 1.0)
    frame, before, after = workflow.before_after_still(ws, sh020.id)
    assert frame == 30
    [source] = list(read_frames(probe(media), 30, 30))
    assert np.array_equal(before, to_float(source))
    assert qc.psnr(after, recolor_image(to_float(source), KEYED)[0]) > 30.0
    assert workflow.before_after_still(ws, sh010.id) is None


# ------------------------------------------------------------------------- deployments and form


def test_prefect_yaml_describes_the_deployments_the_code_registers():
    from studio_nova_flows import deployments

    text = (REPO / "deploy" / "prefect.yaml").read_text()
    assert "&cpu_pool" in text and "*gpu_pool" in text and "<<: *shared" in text, "shared settings as anchors"
    config = yaml.safe_load(text)
    described = {
        (d["entrypoint"], d["name"]): (d["work_pool"]["name"], [s["cron"] for s in d.get("schedules") or []])
        for d in config["deployments"]
    }
    registered = {(s.flow, s.name): (s.pool, [s.cron] if s.cron else []) for s in deployments.DEPLOYMENTS}
    assert described == registered
    # The nightly dispatches (CPU pool); its slot runs render on the GPU pool, one per GPU worker:
    # the pool has no limit of its own (each GPU worker runs with --limit 1).
    assert registered[("studio_nova_flows.render.render_flow", "nightly")] == ("studio-nova-cpu", ["0 1 * * *"])
    assert registered[("studio_nova_flows.render.render_slot_flow", "slot")] == ("studio-nova-gpu", [])
    assert {p.name: p.concurrency_limit for p in deployments.POOLS} == {"studio-nova-cpu": None, "studio-nova-gpu": None}
    names = [s.full_name for s in deployments.DEPLOYMENTS]
    assert len(set(names)) == len(names) and "studio-nova-render/nightly" in names


def test_review_form_offers_approve_or_reject_and_refuses_other_shapes():
    from pydantic import ValidationError

    from studio_nova_flows.review import ReviewInput

    schema = ReviewInput.model_json_schema()
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert set(schema["properties"]) >= {"decision", "reviewer", "notes", "new_instruction", "new_seed"}
    assert ReviewInput(decision="reject", reviewer="ana", notes="x", new_seed=3).new_seed == 3
    with pytest.raises(ValidationError):
        ReviewInput(decision="maybe")
    with pytest.raises(ValidationError):
        ReviewInput(decision="reject", new_seed="three")
    answer = review_gate.Answer("reject", "ana", notes="x", new_instruction="y", new_seed=1)
    assert ReviewInput(**answer.as_input()).model_dump(include=set(answer.as_input())) == answer.as_input()


def test_the_library_modules_of_the_gate_do_not_import_prefect():
    code = (
        "import sys, studio_nova.workflow.review_page, studio_nova.workflow.review_gate, studio_nova.app.server, studio_nova.app.cli, "
        "studio_nova.workflow; print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
