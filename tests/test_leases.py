"""Render leases and retries that fit the failure: a shot is rendered only by the worker holding
its lease; a lost worker's shot is taken over once the lease runs out and resumes at its first
unfinished chunk; a transient failure (GPU out of memory, an encoder killed) retries the chunk,
a deterministic one fails the shot once; a chunk that never finishes stops after its attempts.

Store-level tests run on SQLite and PostgreSQL; render-level ones use the real `flow` propagator,
real ffmpeg and the real store, with faults injected around the real propagator.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import bad_inputs_media as media
import numpy as np
import pytest
import torch
from test_pipeline import _clip, _timeline
from test_store import _approved, db_url, store  # noqa: F401 (db_url, store: fixtures)
from test_store import _timeline as _store_timeline

from studio_nova import workflow
from studio_nova.config import Settings
from studio_nova.cut.plan import plan_chunks
from studio_nova.errors import EncoderKilled, LeaseLost, PropagationError
from studio_nova.media.decode import read_frames
from studio_nova.media.encode import VideoWriter
from studio_nova.media.probe import probe
from studio_nova.store import Store
from studio_nova.workflow.leases import dead_local_holder, is_transient, worker_name

workflow_render = importlib.import_module("studio_nova.workflow.render")

CHUNKING = {"chunk_length": 17, "chunk_overlap": 4}
FRAMES = 56
CHUNKS = plan_chunks(0, FRAMES - 1, length=17, overlap=4)
EDIT = {"instruction": "turn the red square teal", "editor": "recolor",
        "params": {"key": {"hue": 0, "width": 40, "min_saturation": 0.35, "softness": 15}, "hue_shift": 130}}


# ------------------------------------------------------------------------------------ the store


def test_a_live_lease_keeps_other_workers_off_and_a_run_out_one_is_taken_over(store: Store) -> None:
    shot = _approved(store, _store_timeline(store), "V1/sh010")
    held = store.claim_shot(shot.id, "gpu-a", lease=timedelta(seconds=30))
    assert (held.worker, held.lease_is_live(held.claimed_at)) == ("gpu-a", True)
    assert store.claim_shot(shot.id, "gpu-b", lease=timedelta(seconds=30)) is None
    assert store.claim_next_shot("gpu-b", ["approved"], lease=timedelta(seconds=30)) is None
    assert store.claim_shot(shot.id, "gpu-a", lease=timedelta(seconds=30)).worker == "gpu-a", "its holder extends it"
    # Status changes do not end a lease: it holds across approved -> rendering.
    render = store.start_render(shot.id, "prores_hq")
    assert store.shot(shot.id).lease_is_live(store.shot(shot.id).claimed_at)

    store.claim_shot(shot.id, "gpu-a", lease=timedelta(milliseconds=50))
    time.sleep(0.2)  # gpu-a stops renewing: its lease runs out
    taken = store.claim_next_shot("gpu-b", ["approved", "rendering"], lease=timedelta(seconds=30))
    assert (taken.id, taken.worker) == (shot.id, "gpu-b")
    with pytest.raises(LeaseLost, match="gpu-b took it over"):
        store.renew_lease(shot.id, "gpu-a", lease=timedelta(seconds=30))
    assert store.release_shot(shot.id, "gpu-a") is False, "a worker cannot release what it lost"
    assert store.release_shot(shot.id, "gpu-b") is True
    assert store.claim_shot(shot.id, "gpu-c", lease=timedelta(seconds=30)).worker == "gpu-c"
    # A chunk claimed by a worker that was taken over cannot be recorded by it any more.
    chunk = store.plan_chunks(render.id, [(0, 99)])[0]
    store.claim_chunk(chunk.id, "gpu-a")
    store.claim_chunk(chunk.id, "gpu-c", stale_after=timedelta(0))
    with pytest.raises(LeaseLost, match="taken over by gpu-c"):
        store.complete_chunk(chunk.id, "/r/c0.mov", worker="gpu-a")
    done = store.complete_chunk(chunk.id, "/r/c0.mov", worker="gpu-c")
    assert done.started_at <= done.finished_at


def test_a_holder_known_dead_is_taken_over_before_its_lease_runs_out(store: Store) -> None:
    shot = _approved(store, _store_timeline(store), "V1/sh010")
    store.claim_shot(shot.id, "host:1:dead", lease=timedelta(hours=1))
    assert store.claim_shot(shot.id, "host:2", lease=timedelta(hours=1)) is None
    assert store.claim_shot(shot.id, "host:2", lease=timedelta(hours=1), take_over_from="host:1:dead").worker == "host:2"


def test_a_person_s_retry_gives_unfinished_chunks_their_attempts_back(store: Store) -> None:
    shot = _approved(store, _store_timeline(store), "V1/sh010")
    render = store.start_render(shot.id, "prores_hq")
    first, second = store.plan_chunks(render.id, [(0, 60), (45, 99)])
    store.claim_chunk(first.id, "w")
    store.complete_chunk(first.id, "/r/0.mov")
    for _ in range(3):
        store.claim_chunk(second.id, "w", stale_after=timedelta(0))
        store.fail_chunk(second.id, "bad")
    assert store.claim_chunk(second.id, "w") is None, "out of attempts"
    store.set_status(shot.id, "failed", error="chunk 1 failed 3 times")
    store.set_status(shot.id, "approved")
    after = store.chunks(render.id)
    assert [(c.status, c.attempts) for c in after] == [("done", 1), ("failed", 0)]
    assert store.claim_chunk(second.id, "w").attempts == 1


def test_dead_local_holder_is_a_gone_process_of_this_host_only() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    me = worker_name("run-1")
    assert me.split(":")[1] == str(os.getpid())
    assert dead_local_holder(f"{me.split(':')[0]}:{child.pid}:run-2")
    assert not dead_local_holder(me), "this process is alive"
    assert not dead_local_holder(f"another-host:{child.pid}"), "another machine's process cannot be seen from here"
    assert not dead_local_holder(None)


# ------------------------------------------------------------------------------------ failures


def test_gpu_out_of_memory_and_a_killed_encoder_are_transient_bad_input_is_not(tmp_path) -> None:
    assert is_transient(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_transient(RuntimeError("CUDA error: out of memory"))
    wrapped = PropagationError("the model failed")
    wrapped.__cause__ = torch.OutOfMemoryError("CUDA out of memory")
    assert is_transient(wrapped)
    assert not is_transient(PropagationError("propagator returned frames (3, 8, 8, 3) for a chunk of (4, 8, 8, 3)"))
    assert not is_transient(LeaseLost("taken over"))
    assert not is_transient(ValueError("bad params"))

    writer = VideoWriter(tmp_path / "killed.mov", width=64, height=48, rate=24, codec="prores_hq", input_dtype=np.uint8)
    writer.write(np.zeros((48, 64, 3), np.uint8))
    os.kill(writer._job._process.pid, signal.SIGKILL)
    with pytest.raises(EncoderKilled, match="killed \\(SIGKILL\\)") as raised:
        for _ in range(200):
            writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.close()
    assert is_transient(raised.value)
    assert not (tmp_path / "killed.mov").exists(), "nothing was published under the real name"


# ------------------------------------------------------------------------------------ renders


@pytest.fixture(scope="module")
def cut(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lease-footage")
    movie = media.write_movie(root / "SH010.mov", FRAMES, seed=4)
    return _timeline(root / "leases.otio", [_clip("SH010", movie, 0, FRAMES, edit=EDIT)])


class Faulty:
    """The real propagator, recording the chunks it was asked for (by first source frame), with
    `faults[first_frame]` a list of callables run (and popped) before that chunk."""

    def __init__(self, real, calls: list[int], faults: dict) -> None:
        self._real, self._calls, self._faults = real, calls, faults
        self.name, self.supports_guide = real.name, getattr(real, "supports_guide", False)

    def propagate(self, chunk):
        self._calls.append(chunk.first_frame)
        pending = self._faults.get(chunk.first_frame)
        if pending:
            pending.pop(0)()
        return self._real.propagate(chunk)


@pytest.fixture
def faults(monkeypatch):
    calls: list[int] = []
    planned: dict = {}
    real_load = workflow_render.load_propagator
    monkeypatch.setattr(workflow_render, "load_propagator",
                        lambda name, settings=None, **o: Faulty(real_load(name, settings, **o), calls, planned))
    return calls, planned


def _prepared(out: Path, cut: Path, **settings) -> tuple[workflow.Workspace, int]:
    ws = workflow.Workspace.open(out, Settings(**CHUNKING, **settings))
    [shot_id] = workflow.ingest_cut(ws, cut).shot_ids
    workflow.prepare_shot(ws, shot_id, auto_approve=True)
    return ws, shot_id


def _chunks(ws: workflow.Workspace, shot_id: int):
    return ws.store.chunks(ws.store.latest_render(shot_id, complete_only=False).id)


def _frame_count(path: str) -> int:
    info = probe(path)
    return sum(1 for _ in read_frames(info, 0, info.frame_count - 1))


def test_a_gpu_out_of_memory_retries_the_chunk_and_the_render_goes_on(cut, faults, tmp_path):
    calls, planned = faults

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    planned[CHUNKS[1][0]] = [oom]
    ws, shot_id = _prepared(tmp_path / "out", cut)
    try:
        shot = workflow.render(ws, shot_id)
        assert shot.status == "rendered", shot.error
        assert calls == [CHUNKS[0][0], CHUNKS[1][0], CHUNKS[1][0], *[c[0] for c in CHUNKS[2:]]], calls
        chunks = _chunks(ws, shot_id)
        assert [c.attempts for c in chunks] == [1, 2] + [1] * (len(CHUNKS) - 2)
        assert "out of memory" in chunks[1].error
        assert len(ws.store.renders(shot_id)) == 1, "the retry went on in the same render version"
        assert _frame_count(ws.store.current_render(shot_id).path) == FRAMES
        assert ws.store.shot(shot_id).lease_expires_at is None, "the lease was released"
    finally:
        ws.close()


def test_a_deterministic_failure_fails_the_shot_once_with_its_error(cut, faults, tmp_path):
    calls, planned = faults

    def bad():
        raise PropagationError("the keyframe edit cannot be carried: bad params", shot="SH010", frame=CHUNKS[1][0])

    planned[CHUNKS[1][0]] = [bad, bad, bad]
    ws, shot_id = _prepared(tmp_path / "out", cut)
    try:
        workflow.guarded(ws, shot_id, lambda: workflow.render(ws, shot_id))
        shot = ws.store.shot(shot_id)
        assert shot.status == "failed" and "bad params" in shot.error
        assert calls == [CHUNKS[0][0], CHUNKS[1][0]], "tried once, not retried"
        assert [c.attempts for c in _chunks(ws, shot_id)][:2] == [1, 1]
    finally:
        ws.close()


def test_a_chunk_whose_worker_is_lost_every_time_fails_the_shot_after_its_attempts(cut, faults, tmp_path):
    ws, shot_id = _prepared(tmp_path / "out", cut, render_attempts=2)
    try:
        shot = ws.store.shot(shot_id)
        render = ws.store.start_render(shot_id, codec=workflow.MASTER_CODEC,
                                       identity=workflow.render_plan(ws, shot).identity)
        chunk = ws.store.plan_chunks(render.id, CHUNKS)[0]
        for lost in ("gpu-a", "gpu-b"):  # two workers died in chunk 0 (never completed, never failed)
            ws.store.claim_chunk(chunk.id, lost, stale_after=timedelta(0))
        workflow.guarded(ws, shot_id, lambda: workflow.render(ws, shot_id))
        shot = ws.store.shot(shot_id)
        assert shot.status == "failed"
        assert "chunk 0" in shot.error and "attempted 2 times" in shot.error and "gpu-b" in shot.error, shot.error
        # The person's retry (a rerun) gives it its attempts back, and it renders.
        workflow.prepare_shot(ws, shot_id)
        assert workflow.render(ws, shot_id).status == "rendered"
    finally:
        ws.close()


def test_a_worker_whose_lease_is_taken_over_stops_and_the_new_holder_resumes(cut, faults, tmp_path):
    calls, planned = faults
    out = tmp_path / "out"
    ws, shot_id = _prepared(out, cut, lease_seconds=1)
    ws.worker = "gpu-a"
    other = Store.open(ws.store.engine.url)

    def taken_over():  # gpu-a looked dead (say, a network partition): gpu-b took the shot
        taken = other.claim_shot(shot_id, "gpu-b", lease=timedelta(seconds=60), take_over_from="gpu-a")
        assert taken.worker == "gpu-b"
        time.sleep(0.6)  # gpu-a's next heartbeat (every 0.25 s) learns it

    planned[CHUNKS[2][0]] = [taken_over]
    try:
        with pytest.raises(LeaseLost, match="gpu-b took it over"):
            workflow.render(ws, shot_id)
        chunks = _chunks(ws, shot_id)
        assert [c.status for c in chunks[:2]] == ["done", "done"]
        assert chunks[2].status == "running" and chunks[2].worker == "gpu-a", "gpu-a recorded nothing more"
        assert ws.store.shot(shot_id).worker == "gpu-b"
        workflow.guarded(ws, shot_id, lambda: None)  # (guarded never fails a shot for a lost lease)

        calls.clear()
        b = workflow.Workspace.open(out, Settings(**CHUNKING))
        b.worker = "gpu-b"
        try:
            assert workflow.render(b, shot_id).status == "rendered"
            assert calls == [c[0] for c in CHUNKS[2:]], f"gpu-b resumed at chunk 2, not at {calls[:1]}"
            after = _chunks(b, shot_id)
            assert [c.worker for c in after] == ["gpu-a", "gpu-a"] + ["gpu-b"] * (len(CHUNKS) - 2)
            assert _frame_count(b.store.current_render(shot_id).path) == FRAMES
        finally:
            b.close()
    finally:
        other.close()
        ws.close()


def test_a_shot_another_live_worker_holds_is_left_to_it(cut, faults, tmp_path):
    calls, _ = faults
    ws, shot_id = _prepared(tmp_path / "out", cut)
    try:
        ws.store.claim_shot(shot_id, "farm-node-7:4242:run", lease=timedelta(minutes=5))
        shot = workflow.render(ws, shot_id)
        assert (shot.status, shot.worker, calls) == ("approved", "farm-node-7:4242:run", [])
    finally:
        ws.close()


# ------------------------------------------------------------------------------------ orchestration


def test_the_prefect_retry_condition_takes_transient_failures_only():
    from prefect.states import Failed

    from studio_nova.errors import StoreUnavailable
    from studio_nova_flows.run import retry_if_transient

    assert retry_if_transient(None, None, Failed(data=StoreUnavailable("store 'x' is unavailable: refused")))
    assert retry_if_transient(None, None, Failed(data=torch.OutOfMemoryError("CUDA out of memory")))
    assert not retry_if_transient(None, None, Failed(data=PropagationError("bad params")))
    assert not retry_if_transient(None, None, Failed(data=LeaseLost("taken over")))


@pytest.mark.slow  # an ephemeral Prefect server: 10-20 s to start, longer on a loaded machine
def test_prefect_retries_a_step_only_for_a_transient_failure():
    from prefect import flow, task

    from studio_nova.errors import StoreUnavailable
    from studio_nova_flows.run import RETRIES

    calls: list[str] = []

    @task(**{**RETRIES, "retry_delay_seconds": 0})
    def step(kind: str) -> str:
        calls.append(kind)
        if len([c for c in calls if c == kind]) == 1:
            raise StoreUnavailable("store is unavailable: connection refused") if kind == "transient" \
                else PropagationError("bad params")
        return "done"

    @flow
    def both() -> list[str]:
        out = [step("transient")]
        try:
            out.append(step("deterministic"))
        except PropagationError as exc:
            out.append(f"failed: {exc}")
        return out

    assert both() == ["done", "failed: bad params"]
    assert calls == ["transient", "transient", "deterministic"], "retried once after the transient failure only"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.run([sys.executable, "-m", "studio_nova.app.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**clean, "STUDIO_NOVA_PREFECT_PORT": "9", **env})


def test_a_worker_without_a_server_or_with_an_unknown_pool_says_what_to_do():
    no_server = _cli("worker", "--pool", "gpu")
    assert no_server.returncode == 1 and "PREFECT_API_URL" in no_server.stderr, no_server.stderr
    bad_pool = _cli("worker", "--pool", "tpu")
    assert bad_pool.returncode == 1 and "--pool must be gpu or cpu" in bad_pool.stderr, bad_pool.stderr


def test_a_chunk_recorded_done_whose_files_are_gone_is_claimed_and_rendered_again(cut, faults, tmp_path):
    import threading

    from studio_nova.render.shot import RenderStopped

    calls, planned = faults
    stop = threading.Event()
    planned[CHUNKS[2][0]] = [stop.set]  # stop once chunk 2 is done
    ws, shot_id = _prepared(tmp_path / "out", cut)
    try:
        with pytest.raises(RenderStopped):
            workflow.render(ws, shot_id, stop=stop)
        shot = ws.store.shot(shot_id)
        work = ws.render_paths(shot, 1)[2]
        (work / "chunk_0001.mov").unlink()  # e.g. a scratch disk cleaned under a paused render
        calls.clear()
        assert workflow.render(ws, shot_id).status == "rendered"
        # Chunk 1 must be rendered again, and chunk 0 with it (its tail, chunk 1's anchors, is spent).
        assert calls == [c[0] for c in CHUNKS[:2]] + [c[0] for c in CHUNKS[3:]], calls
        assert [c.attempts for c in _chunks(ws, shot_id)] == [2, 2, 1] + [1] * (len(CHUNKS) - 3)
        assert _frame_count(ws.store.current_render(shot_id).path) == FRAMES
    finally:
        ws.close()


@pytest.mark.parametrize("variable", ["STUDIO_NOVA_LEASE_SECONDS", "STUDIO_NOVA_RENDER_ATTEMPTS",
                                      "STUDIO_NOVA_FARM_POLL_SECONDS"])
def test_a_farm_setting_below_one_is_refused_by_name(monkeypatch, variable):
    from studio_nova.config import load_settings
    from studio_nova.errors import ConfigError

    monkeypatch.setenv(variable, "0")
    with pytest.raises(ConfigError, match=variable):
        load_settings()
