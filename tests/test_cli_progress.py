"""The typer + rich CLI: the live progress of an in-process run on a terminal's stderr, and the
`--json` contract (same keys, nothing but JSON on stdout, same exit statuses)."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from test_pipeline import KEYED, H, W, _clip, _timeline, _write

from studio_nova import workflow
from studio_nova.app.cli import main
from studio_nova.app.cli import progress as cli_progress
from studio_nova.app.cli.progress import run_display
from studio_nova.app.runner import run_timeline
from studio_nova.config import Settings
from studio_nova.footage.synthetic import make_scene
from studio_nova.render.shot import RenderProgress

CHUNKS = {"STUDIO_NOVA_CHUNK_LENGTH": "21", "STUDIO_NOVA_CHUNK_OVERLAP": "4"}  # 38 frames: 2 chunks
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHOT_KEYS = {"name", "key", "status", "render", "proxy", "version", "first_frame", "last_frame", "qc"}
PLAN_KEYS = {"name", "key", "media", "rate", "rate_fraction", "width", "height", "bit_depth", "first_frame",
             "last_frame", "chunks", "keyframes", "edit"}


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    media = _write(root / "A001.mov", make_scene(60, W, H, seed=7, noise=0.01).frames, timecode="01:00:00:00")
    edit = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
    return _timeline(root / "cut.otio", [_clip("sh010", media, 0, 38, total=60, edit=edit),
                                         _clip("sh020", media, 40, 12, total=60, edit=edit)])


@pytest.fixture
def small_chunks(monkeypatch):
    for name, value in CHUNKS.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture
def terminal(monkeypatch):
    """What a person's terminal would show on stderr (rich forced to draw, into a buffer)."""
    screen = io.StringIO()
    monkeypatch.setattr(cli_progress, "stderr_console", lambda: Console(file=screen, force_terminal=True, width=160))
    return screen


def _shown(screen: io.StringIO) -> str:
    return ANSI.sub("", screen.getvalue())


class Recorder:
    """A RunObserver that keeps what it hears."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def shot_started(self, shot: str, index: int, shots: int) -> None:
        self.events.append(("started", shot, index, shots))

    def render_progress(self, event: RenderProgress) -> None:
        self.events.append(event)

    def shot_finished(self, shot: str, status: str) -> None:
        self.events.append(("finished", shot, status))


def test_run_cut_reports_shots_chunks_and_frames(cut, small_chunks, tmp_path):
    heard = Recorder()
    result = run_timeline(cut, tmp_path / "out", settings=small_chunks, auto_approve=True, orchestrator="none",
                          progress=heard)
    assert [s["status"] for s in result["shots"]] == ["conformed", "conformed"]
    assert heard.events == [
        ("started", "sh010", 0, 2),
        RenderProgress("sh010", 0, 2, 0, 38),
        RenderProgress("sh010", 1, 2, 17, 38),  # a chunk commits the frames before the next one starts
        RenderProgress("sh010", 2, 2, 38, 38),
        ("finished", "sh010", "rendered"),
        ("started", "sh020", 1, 2),
        RenderProgress("sh020", 0, 1, 0, 12),
        RenderProgress("sh020", 1, 1, 12, 12),
        ("finished", "sh020", "rendered"),
    ]
    again = Recorder()  # a rerun renders nothing: the shots pass, no chunk is reported
    run_timeline(cut, tmp_path / "out", settings=small_chunks, auto_approve=True, orchestrator="none", progress=again)
    assert not any(isinstance(e, RenderProgress) for e in again.events)


def test_a_plain_progress_callable_still_hears_chunks_done_and_total(cut, small_chunks, tmp_path):
    """The Prefect flow's callback, `progress(done, total)`, is called exactly as before."""
    ws = workflow.Workspace.open(tmp_path / "out", small_chunks)
    try:
        [shot_id, _] = workflow.ingest_cut(ws, cut).shot_ids
        workflow.prepare_shot(ws, shot_id, auto_approve=True)
        calls: list[tuple[int, int]] = []
        workflow.render(ws, shot_id, progress=lambda done, total: calls.append((done, total)))
        assert calls == [(1, 2), (2, 2)]
        assert ws.store.shot(shot_id).status == "rendered"
    finally:
        ws.close()


def test_the_terminal_shows_shots_chunks_frames_per_second(cut, small_chunks, terminal, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["run", str(cut), "--out", out, "--auto-approve", "--orchestrator", "none"]) == 0
    shown = _shown(terminal)
    assert "chunks 2/2  frames 38/38" in shown and "chunks 1/1  frames 12/12" in shown
    assert "1/2 shots" in shown and "2/2 shots" in shown
    assert re.search(r"sh010: rendered \(38 frames at \d+\.\d frames/s\)", shown), shown
    assert re.search(r"\d+\.\d frames/s", shown) and " left" in shown
    table = capsys.readouterr().out  # the result is a table on stdout, the display stayed on stderr
    assert "sh010" in table and "conformed" in table and "conformed cut:" in table
    assert "frames/s" not in table and not ANSI.search(table)


def test_no_display_without_a_terminal_or_for_an_orchestrated_run():
    with run_display(console=Console(file=io.StringIO())) as display:
        assert display is None
    with run_display(enabled=False, console=Console(file=io.StringIO(), force_terminal=True)) as display:
        assert display is None


def test_json_is_the_same_document_with_the_display_on(cut, small_chunks, terminal, tmp_path, capsys):
    out = str(tmp_path / "out")
    code = main(["run", str(cut), "--out", out, "--auto-approve", "--orchestrator", "none", "--json",
                 "--format", "fcp_xml", "--format", "cmx_3600"])
    stdout = capsys.readouterr().out
    assert code == 0 and "chunks 2/2" in _shown(terminal)
    report = json.loads(stdout)  # nothing but the document: no markup, no progress
    assert set(report) == {"conformed", "formats", "shots"} and set(report["formats"]) == {"fcp_xml", "cmx_3600"}
    assert [set(s) for s in report["shots"]] == [SHOT_KEYS, SHOT_KEYS]
    assert stdout == json.dumps(report, indent=2) + "\n"

    assert main(["plan", str(cut), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert set(plan) == {"shots", "problems"} and [set(s) for s in plan["shots"]] == [PLAN_KEYS, PLAN_KEYS]
    assert set(plan["shots"][0]["edit"]) == {"instruction", "editor", "params", "seed"}
    assert plan["shots"][0]["chunks"] == [[0, 20], [17, 37]]

    assert main(["review", "list", "--out", out, "--all", "--json"]) == 0
    [row, _] = json.loads(capsys.readouterr().out)["shots"]
    assert set(row) == {"name", "key", "shot", "status", "keyframe_version", "keyframes", "reviews",
                        "review_expires_at", "review_expired"}
    assert set(row["reviews"][0]) == {"decision", "reviewer", "notes", "time"}

    assert main(["editors", "list", "--json"]) == 0
    [editor, *_] = json.loads(capsys.readouterr().out)["editors"]
    assert {"name", "target", "description", "loadable", "ready", "reason"} <= set(editor)


def test_errors_and_exit_statuses_are_unchanged(tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    assert main(["review", "list", "--out", str(nowhere), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": {
        "type": "StudioNovaError", "message": f"file {str(nowhere)!r}: no studio-nova run in {nowhere} "
        "(no studio-nova.db there)", "path": str(nowhere)}}
    assert captured.err.startswith("studio-nova: error: file ")

    assert main(["model", "init", str(tmp_path / "m")]) == 1  # the same error without --json: stderr only
    captured = capsys.readouterr()
    assert captured.out == "" and "only --tiny checkpoints" in captured.err

    for usage in (["bogus"], ["run", "cut.otio"], ["run", "cut.otio", "--out", "o", "--format", "avid"],
                  ["bench", "model", "--config", "huge"], ["review"], []):
        assert main(usage) == 2, usage
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "t"), "--resume", "--lr", "0.1"]) == 2
    assert "cannot change a resumed run (only --steps can)" in capsys.readouterr().err
