"""Deterministic faults in the middle of a render, and what a rerun makes of them.

A shot long enough for four chunks (56 frames, chunks of 17 overlapping by 4, 64×48) is rendered
beside a short one, with the real `flow` propagator, the real store and real ffmpeg. Faults:

- the propagator raises a StudioNovaError at chunk N, once: the shot is reported failed with that
  error, the other shot renders, and a rerun renders only chunks N… (the store's chunk records say
  chunks < N were not claimed again);
- the process is SIGKILLed right after chunk N is finished, or while the master is being
  published: nothing exists under a master's or proxy's real name before the render completes, no
  `*.partial*` file is left outside `.work` once the rerun is done, and the rerun resumes where the
  store says the render stopped;
- `studio-nova run` gets SIGTERM after chunk N: it stops at that chunk boundary with exit status
  143 and `"interrupted": "SIGTERM"`, and running it again goes on from chunk N+1.

In every case the finished master is bit-identical (every decoded frame) to the master of an
uninterrupted run of the same cut in another folder.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import bad_inputs_media as media
import numpy as np
import pytest
from test_pipeline import _clip, _timeline

from studio_nova import workflow
from studio_nova.config import Settings
from studio_nova.cut.plan import plan_chunks
from studio_nova.errors import PropagationError
from studio_nova.media.decode import read_frames
from studio_nova.media.probe import probe

# The module, not the `render` function that `studio_nova.workflow` exports under the same name.
workflow_render = importlib.import_module("studio_nova.workflow.render")

CHUNKING = {"chunk_length": 17, "chunk_overlap": 4}
LONG, SHORT = "SH010", "SH020"
LONG_FRAMES, SHORT_FRAMES = 56, 9
CHUNKS = plan_chunks(0, LONG_FRAMES - 1, length=CHUNKING["chunk_length"], overlap=CHUNKING["chunk_overlap"])
EDIT = {"instruction": "turn the red square teal", "editor": "recolor",
        "params": {"key": {"hue": 0, "width": 40, "min_saturation": 0.35, "softness": 15}, "hue_shift": 130}}


def _settings() -> Settings:
    return Settings(**CHUNKING)


@pytest.fixture(scope="module")
def cut(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault-footage")
    long = media.write_movie(root / f"{LONG}.mov", LONG_FRAMES, seed=4)
    short = media.write_movie(root / f"{SHORT}.mov", SHORT_FRAMES, seed=5)
    assert len(CHUNKS) >= 4, CHUNKS
    return _timeline(root / "faults.otio", [_clip(LONG, long, 0, LONG_FRAMES, edit=EDIT),
                                            _clip(SHORT, short, 0, SHORT_FRAMES, edit=EDIT)])


def _frames(path: str | Path) -> np.ndarray:
    info = probe(path)
    return np.stack(list(read_frames(info, 0, info.frame_count - 1)))


@pytest.fixture(scope="module")
def reference(cut, tmp_path_factory) -> np.ndarray:
    """Every frame of the long shot's master from an uninterrupted run."""
    ws = workflow.Workspace.open(tmp_path_factory.mktemp("fault-reference") / "out", _settings())
    try:
        shots = {s["name"]: s for s in workflow.run_cut(ws, cut, auto_approve=True).shots}
    finally:
        ws.close()
    assert shots[LONG]["status"] == "conformed", shots[LONG]
    return _frames(shots[LONG]["render"])


class Recording:
    """The real propagator, with a record of the chunks it was asked for (by first source frame)
    and, optionally, one injected failure at the chunk starting at `fail_at`."""

    def __init__(self, real, calls: list[tuple[str, int]], fault: dict) -> None:
        self._real, self._calls, self._fault = real, calls, fault
        self.name = getattr(real, "name", type(real).__name__)
        self.supports_guide = getattr(real, "supports_guide", False)

    def propagate(self, chunk):
        self._calls.append((chunk.shot, chunk.first_frame))
        if self._fault.get("armed") and (chunk.shot, chunk.first_frame) == self._fault["at"]:
            self._fault["armed"] = False
            raise PropagationError("injected fault: the propagator gave up on this chunk",
                                   shot=chunk.shot, frame=chunk.first_frame)
        return self._real.propagate(chunk)


@pytest.fixture
def propagations(monkeypatch):
    """(calls, fault): every chunk the pipeline asks the propagator for, and a fault to arm."""
    calls: list[tuple[str, int]] = []
    fault: dict = {"armed": False}
    real_load = workflow_render.load_propagator

    def load(name, settings=None, **options):
        return Recording(real_load(name, settings, **options), calls, fault)

    monkeypatch.setattr(workflow_render, "load_propagator", load)
    return calls, fault


def _run(out: Path, timeline: Path) -> dict[str, dict]:
    ws = workflow.Workspace.open(out, _settings())
    try:
        return {s["name"]: s for s in workflow.run_cut(ws, timeline, auto_approve=True).shots}
    finally:
        ws.close()


def _chunk_records(out: Path, shot_name: str) -> tuple[list, list]:
    """(every render of the shot, the chunk records of its newest render)."""
    ws = workflow.Workspace.open(out, _settings())
    try:
        [shot] = [s for s in ws.store.shots() if s.name == shot_name]
        renders = ws.store.renders(shot.id)
        return renders, (ws.store.chunks(renders[-1].id) if renders else [])
    finally:
        ws.close()


def _stray_partials(out: Path) -> list[Path]:
    """Temporary files anywhere but the hidden `.work` folder."""
    return [p for p in out.rglob("*partial*") if ".work" not in p.relative_to(out).parts]


def _real_names(out: Path, shot_name: str) -> list[Path]:
    folder = out / "renders" / shot_name
    return sorted(p for p in folder.glob("*") if not p.name.startswith(".")) if folder.exists() else []


FAIL_AT = 2


def test_a_propagator_failing_at_chunk_n_fails_its_shot_only_and_the_rerun_resumes_at_n(
    cut, reference, propagations, tmp_path
):
    calls, fault = propagations
    fault.update(armed=True, at=(LONG, CHUNKS[FAIL_AT][0]))
    out = tmp_path / "out"

    first = _run(out, cut)

    assert first[LONG]["status"] == "failed", first[LONG]
    assert "injected fault" in first[LONG]["error"] and LONG in first[LONG]["error"], first[LONG]["error"]
    assert first[SHORT]["status"] == "conformed", first[SHORT]
    assert _real_names(out, LONG) == [], "a master or proxy exists before its render completed"
    _, chunks = _chunk_records(out, LONG)
    assert [c.status for c in chunks] == ["done"] * FAIL_AT + ["failed"] + ["pending"] * (len(CHUNKS) - FAIL_AT - 1)

    calls.clear()
    rerun_started = datetime.now(timezone.utc)
    second = _run(out, cut)

    assert second[LONG]["status"] == "conformed", second[LONG]
    assert second[SHORT]["status"] == "conformed" and second[SHORT]["render"] == first[SHORT]["render"]
    assert np.array_equal(_frames(second[LONG]["render"]), reference), "the resumed master differs from an uninterrupted one"
    rendered_again = [frame for shot, frame in calls if shot == LONG]
    assert rendered_again == [start for start, _ in CHUNKS[FAIL_AT:]], (
        f"the rerun propagated chunks starting at {rendered_again}; only chunks {FAIL_AT}… "
        f"(starting at {[f for f, _ in CHUNKS[FAIL_AT:]]}) were left to do"
    )
    renders, chunks = _chunk_records(out, LONG)
    assert renders[-1].status == "complete" and renders[-1].path == second[LONG]["render"]
    for chunk in chunks[:FAIL_AT]:
        assert chunk.attempts == 1 and chunk.updated_at < rerun_started, (
            f"chunk {chunk.index} was claimed again by the rerun (attempts {chunk.attempts}, at {chunk.updated_at})"
        )
    assert _stray_partials(out) == []


KILLER = textwrap.dedent("""
    import os, signal, sys
    from studio_nova import workflow
    from studio_nova.config import Settings

    out, timeline, shot, point, after = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class KillAfterChunk:
        def shot_started(self, name, index, shots): pass
        def shot_finished(self, name, status): pass
        def render_progress(self, event):  # after each finished chunk: chunk_index = chunks finished
            if point == "after_chunk" and event.shot == shot and event.chunk_index == after + 1:
                die()

    if point == "publishing_master":  # the master is complete under its temporary name: die
        from pathlib import Path  # as it is about to get its real name (link, rename or replace)

        def dying(call):
            def wrapper(src, dst, *args, **kwargs):
                target = Path(dst)
                if target.suffix == ".mov" and target.parent.name == shot and "renders" in target.parts:
                    die()
                return call(src, dst, *args, **kwargs)
            return wrapper

        os.link, os.rename, os.replace = dying(os.link), dying(os.rename), dying(os.replace)

    ws = workflow.Workspace.open(out, Settings(chunk_length={length}, chunk_overlap={overlap}))
    workflow.run_cut(ws, timeline, auto_approve=True, progress=KillAfterChunk())
    sys.exit("the run was expected to be killed, yet it finished")
""").format(length=CHUNKING["chunk_length"], overlap=CHUNKING["chunk_overlap"])

KILL_AFTER = 1


@pytest.mark.parametrize("point", ["after_chunk", "publishing_master"])
def test_a_render_killed_mid_way_leaves_no_file_under_a_real_name_and_resumes_bit_identically(
    point, cut, reference, propagations, tmp_path
):
    calls, _ = propagations
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLER, str(out), str(cut), LONG, point, str(KILL_AFTER)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, f"the run was not killed (status {killed.returncode}): {killed.stderr[-2000:]}"

    assert _real_names(out, LONG) == [], f"{_real_names(out, LONG)} exist under real names before completion"
    _, chunks = _chunk_records(out, LONG)
    done = [c.index for c in chunks if c.status == "done"]
    expected_done = list(range(KILL_AFTER + 1)) if point == "after_chunk" else list(range(len(CHUNKS)))
    assert done == expected_done, f"the store recorded chunks {done} as done"

    second = _run(out, cut)

    assert second[LONG]["status"] == "conformed" and second[SHORT]["status"] == "conformed", second
    assert np.array_equal(_frames(second[LONG]["render"]), reference), "the resumed master differs from an uninterrupted one"
    rendered_again = [frame for shot, frame in calls if shot == LONG]
    left = [start for start, _ in CHUNKS[len(done):]]
    assert rendered_again == left, f"the rerun propagated chunks starting at {rendered_again}, expected {left}"
    renders, chunks = _chunk_records(out, LONG)
    assert len(renders) == 1 and renders[0].version == 1, "the interrupted render was resumed, not started over"
    assert [c.attempts for c in chunks[: len(done)]] == [1] * len(done), [c.attempts for c in chunks]
    assert [p.name for p in _real_names(out, LONG)] == [f"{LONG}_v001.mov", f"{LONG}_v001_proxy.mp4"]
    assert _stray_partials(out) == [], f"temporary files left outside .work: {_stray_partials(out)}"


TERMINATOR = textwrap.dedent("""
    import contextlib, importlib, os, signal, sys
    cli_run = importlib.import_module("studio_nova.app.cli.run")
    from studio_nova.app.cli import main

    out, timeline, shot, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    class TermAfterChunk:  # what the terminal display hears; sends SIGTERM once chunk `after` is finished
        def shot_started(self, name, index, shots): pass
        def shot_finished(self, name, status): pass
        def render_progress(self, event):
            if event.shot == shot and event.chunk_index == after + 1:
                os.kill(os.getpid(), signal.SIGTERM)

    @contextlib.contextmanager
    def display(**_):
        yield TermAfterChunk()

    cli_run.run_display = display
    sys.exit(main(["run", timeline, "--out", out, "--orchestrator", "none", "--auto-approve", "--json"]))
""")


def test_sigterm_stops_run_after_the_chunk_in_progress_and_the_same_command_goes_on(
    cut, reference, propagations, tmp_path
):
    """`studio-nova run` and SIGTERM (a farm scheduler's stop): exit status 143, the JSON says
    what finished and `"interrupted"`, nothing under a real name; the rerun resumes."""
    calls, _ = propagations
    out = tmp_path / "out"
    env = {**os.environ, "STUDIO_NOVA_CHUNK_LENGTH": str(CHUNKING["chunk_length"]),
           "STUDIO_NOVA_CHUNK_OVERLAP": str(CHUNKING["chunk_overlap"])}
    stopped = subprocess.run([sys.executable, "-c", TERMINATOR, str(out), str(cut), LONG, str(KILL_AFTER)],
                             capture_output=True, text=True, timeout=300, env=env)

    assert stopped.returncode == 128 + signal.SIGTERM, (
        f"exit status {stopped.returncode}, expected 143: {stopped.stderr[-2000:]}"
    )
    report = json.loads(stopped.stdout)
    assert report.get("interrupted") == "SIGTERM", report
    assert {s["name"]: s["status"] for s in report["shots"]}.get(LONG) == "rendering", report["shots"]
    assert _real_names(out, LONG) == [] and _stray_partials(out) == []
    _, chunks = _chunk_records(out, LONG)
    assert [c.index for c in chunks if c.status == "done"] == list(range(KILL_AFTER + 1)), [c.status for c in chunks]

    second = _run(out, cut)

    assert second[LONG]["status"] == "conformed" and second[SHORT]["status"] == "conformed", second
    assert np.array_equal(_frames(second[LONG]["render"]), reference), "the resumed master differs from an uninterrupted one"
    assert [frame for shot, frame in calls if shot == LONG] == [start for start, _ in CHUNKS[KILL_AFTER + 1:]]
    assert _stray_partials(out) == []
