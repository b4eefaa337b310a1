"""A farm on loopback: a Prefect server, the store on PostgreSQL, a CPU worker and three GPU-pool
workers (`studio-nova worker --pool gpu`, the CPU `flow` propagator standing in for a GPU) render
six approved shots from two cuts.

What a TD relies on, read back from the store's records and the files:
- every chunk is rendered exactly once, by some worker, and the renders run at the same time;
- every shot is conformed into its cut;
- with one worker killed (SIGKILL, its flow run with it: a machine lost) mid-render, its shot
  is finished by another worker, resuming at the first chunk the lost one had not finished, and
  the master decodes whole; the lost worker's run is marked crashed in the UI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bad_inputs_media as media
import opentimelineio as otio
import pytest
from conftest import new_postgres_database
from test_nightly_schedule import _descendants, _studio_nova_server
from test_pipeline import _clip, _timeline
from test_server_e2e import _api, _env

from studio_nova import workflow
from studio_nova.config import Settings
from studio_nova.cut.plan import plan_chunks
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.probe import probe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
FRAMES, LENGTH, OVERLAP = 95, 17, 4
CHUNKS = plan_chunks(0, FRAMES - 1, length=LENGTH, overlap=OVERLAP)
GPU_WORKERS = 3
LEASE_SECONDS = 6
EDIT = {"instruction": "turn the red square teal", "editor": "recolor",
        "params": {"key": {"hue": 0, "width": 40, "min_saturation": 0.35, "softness": 15}, "hue_shift": 130}}
FARM_ENV = {
    "STUDIO_NOVA_CHUNK_LENGTH": str(LENGTH),
    "STUDIO_NOVA_CHUNK_OVERLAP": str(OVERLAP),
    "STUDIO_NOVA_LEASE_SECONDS": str(LEASE_SECONDS),
    "STUDIO_NOVA_FARM_POLL_SECONDS": "1",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
}


def _cuts(root: Path) -> list[Path]:
    """Two cuts of three shots each; every shot long enough for several chunks."""
    cuts = []
    for c, cut in enumerate(("reel_a", "reel_b")):
        clips = []
        for s in range(3):
            name = f"{cut.upper()}_SH{(s + 1) * 10:03d}"
            movie = media.write_movie(root / "media" / f"{name}.mov", FRAMES, 96, 64, seed=10 * c + s)
            clips.append(_clip(name, movie, 0, FRAMES, edit=EDIT))
        cuts.append(_timeline(root / f"{cut}.otio", clips))
    return cuts


def _approve_all(out: Path, cuts: list[Path], store_url: str) -> list[int]:
    """Ingest both cuts and approve every shot's keyframes (the reviewers' day, done in-process)."""
    ws = workflow.Workspace.open(out, Settings(database_url=store_url, chunk_length=LENGTH, chunk_overlap=OVERLAP))
    try:
        ids = []
        for cut in cuts:
            for shot_id in workflow.ingest_cut(ws, cut).shot_ids:
                assert workflow.prepare_shot(ws, shot_id, auto_approve=True).status == "approved"
                ids.append(shot_id)
        return ids
    finally:
        ws.close()


class Farm:
    """The server (and its CPU worker, from `studio-nova server --no-workers` plus our own), and
    GPU workers started as a farm node starts them: `studio-nova worker --pool gpu`."""

    def __init__(self, root: Path, api: str, env: dict[str, str]) -> None:
        self.root, self.api, self.env = root, api, env
        self.workers: dict[str, subprocess.Popen] = {}

    def start(self, name: str, pool: str) -> None:
        log = open(self.root / f"{name}.log", "wb")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "studio_nova.app.cli", "worker", "--pool", pool, "--name", name],
            env=_env(self.api, **self.env), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def tree(self, name: str) -> set[int]:
        root = self.workers[name].pid
        return {root} | {pid for pid, _ in _descendants(root)}

    def kill(self, name: str) -> None:
        """A machine lost: SIGKILL to the worker and every process below it, flow runs included."""
        for pid in self.tree(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.workers[name].wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.workers):
            pids = self.tree(name)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.workers[name].wait(timeout=30)

    def logs(self, size: int = 2500) -> str:
        return "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-size:]}" for p in sorted(self.root.glob("*.log")))


@pytest.fixture(scope="module")
def farm(tmp_path_factory) -> Iterator[tuple[Farm, dict[str, str]]]:
    root = tmp_path_factory.mktemp("farm")
    (root / "server").mkdir()
    # A farm's Prefect server keeps its own database on PostgreSQL too (deploy/README.md): on
    # SQLite, four workers polling it lock it often enough to time the API out.
    with (
        new_postgres_database("studio_nova_farm") as store_url,
        new_postgres_database("studio_nova_farm_prefect", "postgresql+asyncpg") as prefect_url,
    ):
        env = dict(FARM_ENV, STUDIO_NOVA_DATABASE_URL=store_url)
        with _studio_nova_server(root / "server", root / "unused", "--no-workers", **env,
                                 PREFECT_API_DATABASE_CONNECTION_URL=prefect_url) as server:
            farm = Farm(root, server.api, env)
            try:
                farm.start("cpu-0", "cpu")
                for i in range(GPU_WORKERS):
                    farm.start(f"gpu-{i}", "gpu")
                _wait_until("3 GPU workers online", lambda: len(_online(server.api, "studio-nova-gpu")) == GPU_WORKERS,
                            120, farm)
                yield farm, env
            finally:
                farm.stop()


def _online(api: str, pool: str) -> list[dict[str, Any]]:
    return [w for w in _api(api, "POST", f"/work_pools/{pool}/workers/filter", {}) if w["status"] == "ONLINE"]


def _wait_until(what: str, check, timeout: float, farm: Farm) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{farm.logs()}")
        time.sleep(0.2)


def _start_render(api: str, out: Path) -> str:
    """A run of the nightly deployment for `out`, as the scheduler would create it."""
    deployment = _api(api, "GET", "/deployments/name/studio-nova-render/nightly")
    return _api(api, "POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"out": str(out)}})["id"]


def _state(api: str, run_id: str) -> str:
    return _api(api, "GET", f"/flow_runs/{run_id}")["state"]["type"]


def _finished(api: str, run_id: str, farm: Farm, timeout: float = 600) -> None:
    state = _wait_until("the render to finish",
                        lambda: (s := _state(api, run_id)) in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and s,
                        timeout, farm)
    assert state == "COMPLETED", f"the render run ended {state}{farm.logs()}"


def _records(store_url: str, out: Path) -> tuple[workflow.Workspace, dict[int, Any], dict[int, list]]:
    ws = workflow.Workspace.open(out, Settings(database_url=store_url, chunk_length=LENGTH, chunk_overlap=OVERLAP))
    shots = {s.id: s for s in ws.store.shots()}
    chunks = {i: [c for r in ws.store.renders(i) for c in ws.store.chunks(r.id)] for i in shots}
    return ws, shots, chunks


def _decodes_whole(path: str) -> int:
    """Frames ffmpeg decodes from `path`, failing on any decode error."""
    run = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", path, "-f", "null", "-"], capture_output=True, text=True)
    assert run.returncode == 0 and not run.stderr.strip(), f"{path} does not decode cleanly: {run.stderr[-2000:]}"
    return probe(path).frame_count


def _conformed_clips(out: Path) -> dict[str, str]:
    """Clip name -> media it is relinked to, over every conformed cut in `out`."""
    clips = {}
    for path in sorted((out / "conformed").glob("*.otio")):
        for clip in otio.adapters.read_from_file(str(path)).find_clips():
            clips[clip.name] = clip.media_reference.target_url
    return clips


def test_three_gpu_workers_render_six_shots_of_two_cuts_each_chunk_exactly_once_at_the_same_time(farm, tmp_path):
    farm_, env = farm
    out = (tmp_path / "out").resolve()
    ids = _approve_all(out, _cuts(tmp_path), env["STUDIO_NOVA_DATABASE_URL"])
    assert len(ids) == 6

    _finished(farm_.api, _start_render(farm_.api, out), farm_)

    ws, shots, chunks = _records(env["STUDIO_NOVA_DATABASE_URL"], out)
    try:
        assert {s.status for s in shots.values()} == {"conformed"}, {s.name: (s.status, s.error) for s in shots.values()}
        for shot_id, shot in shots.items():
            assert [r.version for r in ws.store.renders(shot_id)] == [1], f"{shot.name} was rendered more than once"
            assert [(c.index, c.status, c.attempts) for c in chunks[shot_id]] == \
                [(i, "done", 1) for i in range(len(CHUNKS))], f"{shot.name}: a chunk was rendered more than once"
            assert len({c.worker for c in chunks[shot_id]}) == 1, "one worker rendered each shot"
            assert _decodes_whole(ws.store.current_render(shot_id).path) == FRAMES
        # Renders at the same time: the busy intervals of different workers overlap.
        spans = [(min(c.started_at for c in cs), max(c.finished_at for c in cs), cs[0].worker) for cs in chunks.values()]
        workers = {w for _, _, w in spans}
        assert len(workers) >= 2, f"only {workers} rendered"
        overlapping = [(a, b) for a in spans for b in spans if a[2] != b[2] and a[0] < b[1] and b[0] < a[1]]
        assert overlapping, f"no two workers rendered at the same time: {spans}"
        peak = max(sum(1 for s, e, _ in spans if s <= t < e) for t, _, _ in spans)
        assert peak >= 2, spans
    finally:
        ws.close()
    clips = _conformed_clips(out)
    assert len(clips) == 6 and all("/renders/" in url for url in clips.values()), clips


def test_a_worker_killed_mid_render_leaves_its_shot_to_another_that_resumes_at_the_first_unfinished_chunk(
    farm, tmp_path
):
    farm_, env = farm
    store_url = env["STUDIO_NOVA_DATABASE_URL"]
    out = (tmp_path / "out").resolve()
    _approve_all(out, _cuts(tmp_path), store_url)
    run_id = _start_render(farm_.api, out)

    def mid_render() -> tuple[int, str, int] | None:
        """(shot id, lease holder, chunks done) of a shot a GPU worker is half-way through."""
        ws, shots, chunks = _records(store_url, out)
        ws.close()
        for shot_id, shot in shots.items():
            done = sum(c.status == "done" for c in chunks[shot_id])
            if shot.status == "rendering" and shot.lease_expires_at and 1 <= done <= len(CHUNKS) - 3:
                return shot_id, shot.worker, done
        return None

    shot_id, holder, done_at_kill = _wait_until("a shot half-way rendered", mid_render, 300, farm_)
    pid = int(holder.split(":")[1])
    [victim] = [name for name in farm_.workers if name.startswith("gpu") and pid in farm_.tree(name)]
    farm_.kill(victim)
    killed_at = datetime.now(timezone.utc)

    _finished(farm_.api, run_id, farm_)

    ws, shots, chunks = _records(store_url, out)
    try:
        assert {s.status for s in shots.values()} == {"conformed"}, {s.name: (s.status, s.error) for s in shots.values()}
        lost = chunks[shot_id]
        assert [r.version for r in ws.store.renders(shot_id)] == [1], "the shot went on in the same render"
        assert all(c.status == "done" for c in lost)
        before = [c for c in lost if c.finished_at < killed_at]
        assert len(before) >= done_at_kill and all(c.worker == holder and c.attempts == 1 for c in before), \
            "chunks finished before the kill were kept, not rendered again"
        first_unfinished = len(before)
        after = lost[first_unfinished:]
        assert after and all(c.worker != holder for c in after), "another worker finished the shot"
        # The chunk the lost worker was in (if it had claimed it) was taken over: a second attempt.
        assert after[0].attempts in (1, 2) and all(c.attempts == 1 for c in after[1:]), [c.attempts for c in after]
        assert min(c.started_at for c in after) > killed_at, "the other worker resumed after the loss"
        assert _decodes_whole(ws.store.current_render(shot_id).path) == FRAMES
        for other_id, other in chunks.items():  # nothing else was rendered twice
            if other_id != shot_id:
                assert all(c.attempts == 1 for c in other), shots[other_id].name
    finally:
        ws.close()
    assert len(_conformed_clips(out)) == 6
    # The lost worker's run is not left "running" in the UI.
    lost_run = holder.rsplit(":", 1)[1]
    assert _state(farm_.api, lost_run) == "CRASHED"
    message = _api(farm_.api, "GET", f"/flow_runs/{lost_run}")["state"]["message"]
    assert "worker lost" in message, message
    farm_.start(victim, "gpu")  # the node comes back
