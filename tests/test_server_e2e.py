"""The review gate and the nightly render against a real local Prefect server and workers.

Reviewers answer through the same REST call the UI's resume form makes; `studio-nova review`
answers from a terminal; the nightly deployment is triggered by hand with `prefect deployment run`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import opentimelineio as otio
import pytest
from test_pipeline import KEYED, H, W, _clip, _timeline, _write

from studio_nova.app.server import LocalServer, free_port
from studio_nova.footage.synthetic import make_scene
from studio_nova.store import Store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _env(api: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["STUDIO_NOVA_PREFECT_PORT"] = str(free_port())  # never find someone's server on 4200
    if api:
        env["PREFECT_API_URL"] = api
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def _cli(api: str | None, *args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "studio_nova.app.cli", *args], _env(api))


def _api(api: str, method: str, path: str, body: dict | None = None) -> Any:
    request = urllib.request.Request(
        f"{api}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _wait(what: str, check: Callable[[], Any], timeout: float = 240.0, server: LocalServer | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = ""
            if server is not None and server.log_dir is not None:
                for log in sorted(server.log_dir.glob("worker-*.log")):
                    logs += f"\n--- {log.name}\n" + log.read_text()[-3000:]
            raise AssertionError(f"timed out waiting for {what}{logs}")
        time.sleep(1.0)


def _state(api: str, run_id: str) -> str:
    return _api(api, "GET", f"/flow_runs/{run_id}")["state"]["type"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefect-server")
    local = LocalServer(port=free_port(), home=root / "home", log_dir=root / "logs", env=_env(None))
    try:
        local.start_server()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-media")
    scene = make_scene(80, W, H, seed=11, noise=0.01)
    media = _write(root / "D001.mov", scene.frames)
    edit = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
    clips = [_clip(f"sh0{i}0", media, 20 * (i - 1), 20, total=80, edit=edit) for i in (1, 2, 3, 4)]
    return _timeline(root / "e2e.otio", clips)


def _shots(out: Path) -> dict[str, Any]:
    with Store.open(f"sqlite:///{out / 'studio-nova.db'}") as store:
        return {
            s.name: {
                "id": s.id,
                "status": s.status,
                "version": (store.keyframes(s.id) or [None])[0] and store.keyframes(s.id)[0].version,
                "instruction": (store.keyframes(s.id) or [None])[0] and store.keyframes(s.id)[0].instruction,
                "reviews": [(r.decision, r.reviewer, r.notes, r.new_instruction) for r in store.reviews(s.id)],
                "renders": [(r.version, r.status, r.path) for r in store.renders(s.id)],
            }
            for s in store.shots()
        }


def test_reviewers_gate_renders_and_the_nightly_render_through_a_real_server(server, cut, tmp_path):
    api = server.api_url
    out = tmp_path / "out"

    # Deployments: the project's own registration, then prefect.yaml through Prefect's CLI.
    deployed = _cli(api, "deploy", "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert "studio-nova-render/nightly" in json.loads(deployed.stdout)["deployments"]
    yaml_deploy = _run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml"],
        _env(api, STUDIO_NOVA_NIGHTLY_OUT=str(out)),
    )
    assert yaml_deploy.returncode == 0, yaml_deploy.stdout + yaml_deploy.stderr
    nightly = _api(api, "GET", "/deployments/name/studio-nova-render/nightly")
    # The nightly dispatches on the CPU pool; its slot runs render on the GPU pool.
    assert nightly["parameters"] == {"out": str(out)} and nightly["work_pool_name"] == "studio-nova-cpu"
    assert _api(api, "GET", "/deployments/name/studio-nova-render-slot/slot")["work_pool_name"] == "studio-nova-gpu"
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 1 * * *"]
    server.start_workers()

    # `run` without --auto-approve stops at review: one gate per shot, nothing rendered.
    started = _cli(api, "run", str(cut), "--out", str(out), "--json")
    assert started.returncode == 0, started.stderr
    report = json.loads(started.stdout)
    assert [s["status"] for s in report["shots"]] == ["in_review"] * 4
    shots = _shots(out)
    gates = {name: report["gates"][str(shots[name]["id"])] for name in shots}
    for name, run_id in gates.items():
        _wait(f"{name}'s gate to suspend", lambda: _state(api, run_id) == "PAUSED", server=server)

    # The UI form's call: approve sh010, reject sh020 with a new instruction, an invalid answer on sh030.
    def answer(name: str, **run_input: Any) -> None:
        _api(api, "POST", f"/flow_runs/{gates[name]}/resume", {"run_input": run_input})

    answer("sh010", decision="approve", reviewer="ana", notes="", new_instruction="", new_seed=None)
    answer("sh020", decision="reject", reviewer="ana", notes="too teal", new_instruction="red to green", new_seed=5)
    answer("sh030", decision="reject", reviewer="ana", notes="", new_instruction="", new_seed=-1)

    _wait("sh010 to render and conform", lambda: _shots(out)["sh010"]["status"] == "conformed", 300, server)
    _wait("sh020 re-edited (v002) and waiting again",
          lambda: _shots(out)["sh020"]["version"] == 2 and _state(api, gates["sh020"]) == "PAUSED", server=server)
    _wait("sh030 asked again", lambda: _state(api, gates["sh030"]) == "PAUSED", server=server)
    shots = _shots(out)
    assert shots["sh010"]["reviews"] == [("approved", "ana", "", None)]
    assert shots["sh020"]["reviews"] == [("rejected", "ana", "too teal", "red to green")]
    assert shots["sh020"]["instruction"] == "red to green" and shots["sh020"]["renders"] == []
    assert shots["sh030"]["status"] == "in_review" and shots["sh030"]["reviews"] == []
    pause = _api(api, "GET", f"/flow_runs/{gates['sh030']}")["state"]["state_details"]["pause_key"]
    assert pause.endswith("-v1-1"), f"the invalid answer is asked again under a new key, got {pause}"

    # The terminal resolves the same gate: the waiting run resumes and the shot renders.
    approved = _cli(api, "review", "approve", "sh020", "--out", str(out), "--reviewer", "ben", "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["gate"] == {"action": "resumed", "flow_run_id": gates["sh020"]}
    _wait("sh020 to render and conform", lambda: _shots(out)["sh020"]["status"] == "conformed", 300, server)
    cut_back = otio.adapters.read_from_file(str(out / "conformed" / f"{cut.stem}.otio"))
    relinked = {c.name: c.media_reference.target_url for c in cut_back.find_clips()}
    assert relinked["sh010"].endswith("renders/sh010/sh010_v001.mov")
    assert relinked["sh020"].endswith("renders/sh020/sh020_v001.mov")
    assert "renders" not in relinked["sh030"] and "renders" not in relinked["sh040"]

    # Approved without a server in sight: only the store knows. The nightly renders exactly that.
    offline = _cli(None, "review", "approve", "sh030", "--out", str(out), "--reviewer", "cy", "--json")
    assert offline.returncode == 0 and "gate" not in json.loads(offline.stdout), offline.stderr
    before = {name: list(s["renders"]) for name, s in _shots(out).items()}
    mtimes = {p: Path(p).stat().st_mtime_ns for s in before.values() for _, _, p in s}
    triggered = _run(
        [sys.executable, "-m", "prefect", "deployment", "run", "studio-nova-render/nightly", "--watch",
         "--watch-timeout", "300"],
        _env(api),
        timeout=360,
    )
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    after = _shots(out)
    assert after["sh030"]["status"] == "conformed" and len(after["sh030"]["renders"]) == 1
    assert after["sh040"]["status"] == "in_review" and after["sh040"]["renders"] == []
    for name in ("sh010", "sh020"):
        assert after[name]["renders"] == before[name], f"{name} must not render again"
    assert all(Path(p).stat().st_mtime_ns == t for p, t in mtimes.items())

    # What the morning shows: progress of every render at 100 %, a QC table, before/after stills.
    artifacts = _api(api, "POST", "/artifacts/filter", {})
    progress = [a for a in artifacts if a["type"] == "progress"]
    assert len(progress) == 3 and all(a["data"] == 100.0 for a in progress)
    table = [a for a in artifacts if a["key"] == "studio-nova-qc"]
    latest_table = max(table, key=lambda a: a["created"])
    rows = json.loads(latest_table["data"]) if isinstance(latest_table["data"], str) else latest_table["data"]
    assert sorted(r["shot"] for r in rows) == ["sh010", "sh020", "sh030"]
    assert all(r["untouched_exact"] == 1.0 for r in rows)
    stills = max((a for a in artifacts if a["key"] == "studio-nova-stills"), key=lambda a: a["created"])
    assert stills["data"].count("data:image/jpeg;base64,") == 6


def test_an_unanswered_review_expires_is_reported_on_the_shot_and_can_be_reopened(tmp_path):
    scene = make_scene(20, W, H, seed=12, noise=0.01)
    media = _write(tmp_path / "F001.mov", scene.frames)
    edit = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
    cut = _timeline(tmp_path / "late.otio", [_clip("sh090", media, 0, 20, total=20, edit=edit)])
    out = tmp_path / "out"
    short = {"STUDIO_NOVA_REVIEW_TIMEOUT_HOURS": "0.004"}  # 14.4 s
    local = LocalServer(port=free_port(), home=tmp_path / "home", log_dir=tmp_path / "logs", env=_env(None, **short))
    try:
        local.start()
        api = local.api_url
        assert _cli(api, "deploy").returncode == 0
        first = _run([sys.executable, "-m", "studio_nova.app.cli", "run", str(cut), "--out", str(out), "--json"], _env(api, **short))
        assert first.returncode == 0, first.stderr
        [gate] = json.loads(first.stdout)["gates"].values()
        _wait("the gate to suspend", lambda: _state(api, gate) == "PAUSED", server=local)
        _wait("the pause to expire", lambda: _state(api, gate) == "FAILED", 120, local)

        listed = _run([sys.executable, "-m", "studio_nova.app.cli", "review", "list", "--out", str(out), "--json"],
                      _env(api, **short))
        [row] = json.loads(listed.stdout)["shots"]
        assert (row["status"], row["review_expired"]) == ("in_review", True), "reported on the shot, not failed"

        # The on-demand keyframes deployment (as `run` would) opens a fresh gate; the terminal answers it.
        again = _run(
            [sys.executable, "-m", "prefect", "deployment", "run", "studio-nova-keyframes/on-demand",
             "--param", f"timeline={cut}", "--param", f"out={out}", "--watch", "--watch-timeout", "240"],
            _env(api),
            timeout=300,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        open_gates = _api(api, "POST", "/flow_runs/filter", {
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING", "PAUSED"]}}},
            "deployments": {"name": {"any_": ["review-gate"]}},
        })
        [reopened] = [r["id"] for r in open_gates]
        assert reopened != gate and _shots(out)["sh090"]["version"] == 1, "no re-edit: nothing was decided"
        _wait("the new gate to suspend", lambda: _state(api, reopened) == "PAUSED", server=local)
        approved = _cli(api, "review", "approve", "sh090", "--out", str(out), "--reviewer", "eve", "--json")
        # resumed, or (on a slow machine, past the short timeout again) a render queued directly
        assert json.loads(approved.stdout)["gate"]["action"] in ("resumed", "render-requested"), approved.stderr
        _wait("sh090 to render", lambda: _shots(out)["sh090"]["status"] == "conformed", 300, local)
    finally:
        local.stop()


# ------------------------------------------------------------- the server ends with its workers


def _children_of(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_server_command(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """`studio-nova server` in its own session, once its server and both workers run."""
    port = free_port()
    env = _env(None, STUDIO_NOVA_PREFECT_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio_nova.app.cli", "server", "--port", str(port), "--home", str(tmp_path / "home"),
         "--logs", str(tmp_path / "logs"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True,
    )
    lines = []
    try:
        for line in proc.stdout:  # one JSON document, printed once the workers are started
            lines.append(line)
            if line == "}\n":
                break
        payload = json.loads("".join(lines))
        assert payload["pools"] == ["studio-nova-cpu", "studio-nova-gpu"], payload
        def started() -> list[int] | None:
            children = _children_of(proc.pid)
            return children if len(children) >= 3 else None

        children = _wait("the server and its two workers", started, timeout=60)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        for child in _children_of(proc.pid):
            os.killpg(child, signal.SIGKILL)
        raise
    return proc, children


def _reap(children: list[int]) -> None:
    for pid in children:  # whatever is left, so a failing test leaves nothing behind
        if _group_alive(pid):
            os.killpg(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_server_command_takes_its_server_and_workers_with_it(tmp_path):
    proc, children = _start_server_command(tmp_path)
    try:
        proc.kill()  # SIGKILL: no handler of ours runs
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [c for c in children if _alive(c)]
        assert not left, f"orphans still running after SIGKILL of their parent: {left}"
    finally:
        _reap(children)


def test_sigterm_stops_the_server_command_and_everything_it_started_within_seconds(tmp_path):
    proc, children = _start_server_command(tmp_path)
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr.read()
        assert proc.stdout.read() == "", "more than the one JSON document on stdout"
        assert took < 6.0, f"stopping took {took:.1f} s"
        left = [c for c in children if _alive(c) or _group_alive(c)]
        assert not left, f"still running after the server command stopped: {left}"
    finally:
        _reap(children)
