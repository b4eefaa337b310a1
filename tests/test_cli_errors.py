"""How a command fails and how it stops: every failure of the command itself answers with
`{"error": ...}` (with --json), one line on stderr and exit status 1, creating nothing; SIGTERM
stops an in-process run at a chunk boundary with what finished reported, exit status 143, and
the rerun resumes to a master identical to an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import KEYED, H, W, _clip, _timeline, _write

from studio_nova.app.cli import main
from studio_nova.footage.synthetic import make_scene
from studio_nova.media.decode import read_frames
from studio_nova.media.probe import probe
from studio_nova.store import Store

SMALL_CHUNKS = {"STUDIO_NOVA_CHUNK_LENGTH": "21", "STUDIO_NOVA_CHUNK_OVERLAP": "4"}  # 100 frames: 6 chunks
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio_nova.app.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _error(result: subprocess.CompletedProcess) -> dict:
    """The `{"error": ...}` document a failed command printed: exit 1, one line on stderr."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().startswith("studio-nova: error: "), result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"error"}, document
    return document["error"]


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    media = _write(root / "A001.mov", make_scene(110, W, H, seed=5, noise=0.01).frames, timecode="01:00:00:00")
    edit = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
    return _timeline(root / "cut.otio", [_clip("sh010", media, 5, 100, media_start=90000, total=110, edit=edit)])


def _run(timeline: Path, out: Path | str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return _cli("run", str(timeline), "--out", str(out), "--orchestrator", "none", "--auto-approve", "--json",
                *extra, env=env)


def test_out_that_is_a_file_is_reported_with_its_path(cut, tmp_path):
    out = tmp_path / "a-file"
    out.write_text("not a folder")
    error = _error(_run(cut, out))
    assert error["type"] == "OutputError" and error["path"] == str(out)
    assert "is a file, not a folder" in error["message"] and "--out" in error["message"]
    assert out.read_text() == "not a folder"


def test_out_under_a_file_is_reported_and_nothing_is_created(cut, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "run"
    error = _error(_run(cut, out))
    assert error["type"] == "OutputError" and error["path"] == str(out)
    assert str(blocker) in error["message"] and "is a file" in error["message"]


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders; the next test covers it")
def test_out_in_a_read_only_folder_is_reported(cut, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        error = _error(_run(cut, parent / "run"))
    finally:
        parent.chmod(0o755)
    assert error["type"] == "OutputError" and error["path"] == str(parent / "run")
    assert "cannot be created" in error["message"] and "permission denied" in error["message"]
    assert not (parent / "run").exists()


def test_out_where_no_folder_can_be_made_is_reported(cut):
    """A place nobody can write, root included (sysfs refuses new folders)."""
    if not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    out = Path("/sys/studio-nova-test-out")
    error = _error(_run(cut, out))
    assert error["type"] == "OutputError" and error["path"] == str(out)
    assert "cannot be created" in error["message"] and "--out" in error["message"]


def test_read_only_renders_folder_is_reported_before_anything_runs(cut, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    renders = out / "renders"
    if IS_ROOT:  # root ignores permission bits: renders/ is a folder of sysfs, where nobody may write
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys/kernel here")
        renders.symlink_to("/sys/kernel")
    else:
        renders.mkdir()
        renders.chmod(0o555)
    try:
        error = _error(_run(cut, out))
    finally:
        if not renders.is_symlink():
            renders.chmod(0o755)
    assert error["type"] == "OutputError" and error["path"] == str(renders)
    assert "cannot be written" in error["message"]
    assert not (out / "studio-nova.db").exists(), "the store was made although nothing could run"


def test_bad_setting_value_is_reported_and_nothing_is_created(cut, tmp_path):
    out = tmp_path / "run"
    for name, value in (("STUDIO_NOVA_CHUNK_LENGTH", "abc"), ("STUDIO_NOVA_CHUNK_OVERLAP", "5"),
                        ("STUDIO_NOVA_DEFAULT_PARAMS", "not json")):
        error = _error(_run(cut, out, env=dict(os.environ, **{name: value})))
        assert error["type"] == "ConfigError" and name in error["message"], error
        assert not out.exists()


def test_missing_timeline_is_reported_and_no_folder_is_created(tmp_path):
    out = tmp_path / "run"
    for timeline in (tmp_path / "nope.otio", tmp_path):  # missing; a folder, not a file
        error = _error(_run(timeline, out))
        assert error["type"] == "TimelineError" and error["path"] == str(timeline), error
        assert not out.exists(), "the output folder was created for a timeline that cannot be read"


def test_demo_out_that_is_a_file_is_reported(tmp_path):
    out = tmp_path / "a-file"
    out.write_text("x")
    error = _error(_cli("demo", "--out", str(out), "--orchestrator", "none", "--json"))
    assert error["type"] == "OutputError" and error["path"] == str(out)


def test_unexpected_errors_answer_in_json_and_show_the_traceback_with_verbose(cut, tmp_path, monkeypatch, capsys):
    from studio_nova.app import runner

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(runner, "run_timeline", broken)
    args = ["run", str(cut), "--out", str(tmp_path / "run"), "--orchestrator", "none", "--json"]
    assert main(args) == 1
    shown = capsys.readouterr()
    assert json.loads(shown.out) == {"error": {"type": "InternalError", "message": "internal error: RuntimeError: a bug",
                                               "exception": "RuntimeError"}}
    assert "run again with -v" in shown.err and "Traceback" not in shown.err

    assert main(["-v", *args]) == 1
    shown = capsys.readouterr()
    assert "Traceback" in shown.err and "RuntimeError: a bug" in shown.err


def test_file_system_errors_nobody_caught_name_the_path(cut, tmp_path, monkeypatch, capsys):
    from studio_nova.app import runner

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/locked")

    monkeypatch.setattr(runner, "run_timeline", denied)
    assert main(["run", str(cut), "--out", str(tmp_path / "run"), "--orchestrator", "none", "--json"]) == 1
    shown = capsys.readouterr()
    error = json.loads(shown.out)["error"]
    assert error["type"] == "FileAccessError" and error["path"] == "/somewhere/locked"
    assert "permission denied" in error["message"]
    assert shown.err.startswith("studio-nova: error: ")


# ---------------------------------------------------------------------------------- SIGTERM


def _signal_self(signum: int):
    def send(*_args, **_kwargs):
        os.kill(os.getpid(), signum)
        time.sleep(10)  # the handler interrupts this at once
        raise AssertionError("the signal did not stop the command")

    return send


def test_a_signal_stops_any_other_command_at_once_with_a_json_answer(cut, monkeypatch, capsys):
    from studio_nova.app.cli import run as run_cli

    monkeypatch.setattr(run_cli, "run_settings", _signal_self(signal.SIGTERM))
    assert main(["plan", str(cut), "--json"]) == 128 + signal.SIGTERM
    shown = capsys.readouterr()
    document = json.loads(shown.out)
    assert document["interrupted"] == "SIGTERM" and document["error"]["type"] == "Interrupted"
    assert "SIGTERM" in shown.err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "main left its handler installed"


def test_a_signal_during_an_orchestrated_run_reports_the_shots_as_the_store_has_them(cut, tmp_path, monkeypatch,
                                                                                    capsys):
    from studio_nova.app import runner

    monkeypatch.setattr(runner, "run_timeline", _signal_self(signal.SIGINT))
    code = main(["run", str(cut), "--out", str(tmp_path / "run"), "--orchestrator", "prefect", "--json"])
    assert code == 128 + signal.SIGINT
    assert json.loads(capsys.readouterr().out) == {"conformed": None, "formats": {}, "shots": [],
                                                   "interrupted": "SIGINT"}


def _done_chunks(db: Path) -> list:
    if not db.exists():
        return []
    try:
        store = Store.open(f"sqlite:///{db}")
    except Exception:  # being created by the run
        return []
    try:
        render = next((store.latest_render(s.id, complete_only=False) for s in store.shots()), None)
        return [c for c in store.chunks(render.id) if c.status == "done"] if render else []
    except Exception:
        return []
    finally:
        store.close()

def _terminate_after_a_chunk(cmd: list[str], env: dict[str, str], out: Path, wait: float):
    """Start `cmd`, send it SIGTERM once the store records a finished chunk; (process, whether it
    was sent, stdout, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline, sent = time.monotonic() + wait, False
    while proc.poll() is None and time.monotonic() < deadline:
        if _done_chunks(out / "studio-nova.db"):
            proc.send_signal(signal.SIGTERM)
            sent = True
            break
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=120)
    return proc, sent, stdout, stderr


def _frames(path: str) -> np.ndarray:
    return np.stack(list(read_frames(probe(Path(path)), 0, 99)))


def test_sigterm_stops_an_in_process_run_at_a_chunk_boundary_and_the_rerun_resumes(cut, tmp_path):
    env = dict(os.environ, **SMALL_CHUNKS)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "studio_nova.app.cli", "run", str(cut), "--out", str(out), "--orchestrator", "none",
           "--auto-approve", "--json"]
    proc, sent, stdout, stderr = _terminate_after_a_chunk(cmd, env, out, 120)
    if not sent or (proc.returncode == 0 and '"interrupted"' not in stdout):
        pytest.skip("the render finished before it could be interrupted")

    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stderr and "Traceback" not in stderr
    report = json.loads(stdout)
    assert report["interrupted"] == "SIGTERM" and report["conformed"] is None
    [shot] = report["shots"]
    assert shot["status"] == "rendering" and shot["render"] is None  # resumable, not failed

    store = Store.open(f"sqlite:///{out / 'studio-nova.db'}")
    try:
        render = store.latest_render(store.shots()[0].id, complete_only=False)
        chunks = store.chunks(render.id)
    finally:
        store.close()
    done = {c.index for c in chunks if c.status == "done"}
    assert done and len(done) < len(chunks), [c.status for c in chunks]
    assert not any(c.status == "failed" for c in chunks)
    # Nothing half-written under a real name: no temporary left, no master yet, and every chunk
    # file there is one the ledger records as finished, complete.
    assert not [p for p in out.rglob("*") if ".partial" in p.name]
    assert not list((out / "renders").rglob("*.mov"))
    for segment in (out / ".work").rglob("chunk_*.mov"):
        index = int(segment.stem.split("_")[1])
        assert index in done, f"{segment.name} is under its real name but its chunk is not finished"
        committed_end = chunks[index + 1].first_frame if index + 1 < len(chunks) else chunks[index].last_frame + 1
        assert probe(segment).frame_count == committed_end - chunks[index].first_frame

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr
    [resumed] = json.loads(rerun.stdout)["shots"]
    assert resumed["status"] == "conformed"
    store = Store.open(f"sqlite:///{out / 'studio-nova.db'}")
    try:
        attempts = {c.index: c.attempts for c in store.chunks(render.id)}
    finally:
        store.close()
    assert all(attempts[i] == 1 for i in done), "a finished chunk was rendered again"

    whole = subprocess.run([*cmd[:6], str(tmp_path / "whole"), *cmd[7:]], capture_output=True, text=True,
                           timeout=300, env=env)
    assert whole.returncode == 0, whole.stderr
    [uninterrupted] = json.loads(whole.stdout)["shots"]
    assert np.array_equal(_frames(resumed["render"]), _frames(uninterrupted["render"])), \
        "the resumed master differs from an uninterrupted run's"


@pytest.mark.slow
def test_sigterm_stops_a_prefect_run_with_a_json_answer_and_the_rerun_resumes(cut, tmp_path):
    """Through the (ephemeral) Prefect orchestrator the run stops at once: the flow run ends
    Crashed, the finished chunks are kept, the shots are reported with `interrupted`."""
    from studio_nova.app.server import free_port

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    env.update(SMALL_CHUNKS, STUDIO_NOVA_PREFECT_PORT=str(free_port()))  # never someone's server on 4200
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "studio_nova.app.cli", "run", str(cut), "--out", str(out), "--auto-approve", "--json"]
    proc, sent, stdout, stderr = _terminate_after_a_chunk(cmd, env, out, 240)
    if not sent or proc.returncode == 0:
        pytest.skip("the render finished before it could be interrupted")
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    report = json.loads(stdout)
    assert report["interrupted"] == "SIGTERM" and report["conformed"] is None
    assert [s["status"] for s in report["shots"]] == ["rendering"]
    assert "Crashed" in stderr  # what Prefect made of the flow run
    assert not [p for p in out.rglob("*") if ".partial" in p.name]

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert [s["status"] for s in json.loads(rerun.stdout)["shots"]] == ["conformed"]
