"""The nightly render's schedule against a real `studio-nova server`: the server's own scheduler
must create the nightly runs (DESIGN section 6: tested, not assumed), and a shot approved from a
terminal is rendered and conformed overnight with nobody triggering anything.

The slow tests start `studio-nova server` exactly as a person does (the real command, in a
subprocess, on a free port with its own PREFECT_HOME), talk to it only through the REST API the UI
uses, and stop it as a service manager does (SIGTERM), checking that no process it started is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import opentimelineio as otio
import pytest
from conftest import new_postgres_database
from test_pipeline import KEYED, H, W, _clip, _timeline, _write
from test_server_e2e import _api, _cli, _env

from studio_nova.app.server import free_port
from studio_nova.config import load_settings, validate_cron
from studio_nova.errors import ConfigError
from studio_nova.footage.synthetic import make_scene
from studio_nova.media.probe import probe
from studio_nova.store import Store

REPO = Path(__file__).resolve().parents[1]
NIGHTLY = ("studio-nova-render", "nightly")


# ------------------------------------------------------------------------------ the setting (fast)


def test_nightly_cron_defaults_to_one_in_the_morning_and_takes_any_5_field_cron(monkeypatch):
    assert load_settings().nightly_cron == "0 1 * * *"
    monkeypatch.setenv("STUDIO_NOVA_NIGHTLY_CRON", " */15  0-6 * JAN-MAR mon-fri ")
    assert load_settings().nightly_cron == "*/15 0-6 * JAN-MAR mon-fri"
    assert validate_cron("* * * * *") == "* * * * *"


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("@daily", "needs 5 fields"),
        ("0 1 * *", "got 4"),
        ("0 1 * * * 2026", "got 6"),
        ("60 1 * * *", "minute field '60'"),
        ("0 24 * * *", "hour field '24'"),
        ("0 1 0 * *", "day of month field '0'"),
        ("0 1 * 13 *", "month field '13'"),
        ("0 1 * * FUNDAY", "day of week field 'FUNDAY'"),
        ("*/0 1 * * *", "step '0'"),
    ],
)
def test_when_nightly_cron_is_not_a_5_field_cron_then_the_setting_is_refused_by_name(monkeypatch, cron, says):
    monkeypatch.setenv("STUDIO_NOVA_NIGHTLY_CRON", cron)
    with pytest.raises(ConfigError, match="STUDIO_NOVA_NIGHTLY_CRON") as raised:
        load_settings()
    assert says in str(raised.value)


@pytest.mark.parametrize("command", ["server", "deploy"])
def test_when_nightly_cron_option_is_bad_then_the_command_fails_before_starting_anything(command, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "studio_nova.app.cli", command, "--nightly-cron", "0 25 * * *", "--json",
         *(["--home", str(tmp_path / "home")] if command == "server" else [])],
        capture_output=True, text=True, timeout=120, env=_env(None), cwd=REPO,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["error"]["type"] == "ConfigError"
    assert "--nightly-cron: cron hour field '25'" in done.stderr
    assert not (tmp_path / "home").exists(), "no server was started"


# ------------------------------------------------------------------- `studio-nova server`, for real


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)"
    if fields[0] == "Z":
        return None  # a zombie has ended; only its parent has not reaped it yet
    return int(fields[1]), int(fields[19])


def _descendants(root: int) -> set[tuple[int, int]]:
    """(pid, start time) of every live process below `root`, through any session or group."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            parents.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: set[tuple[int, int]] = set()
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


@dataclass
class _Server:
    """A running `studio-nova server` and every process seen below it."""

    process: subprocess.Popen
    root: Path
    info: dict[str, Any] = field(default_factory=dict)
    seen: set[tuple[int, int]] = field(default_factory=set)

    @property
    def api(self) -> str:
        return self.info["api"]

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log_tails(self, size: int = 3000) -> str:
        text = f"\n--- stderr of studio-nova server\n{(self.root / 'server.err').read_text()[-size:]}"
        for log in sorted(self.logs.glob("*.log")):
            text += f"\n--- {log.name}\n" + log.read_text(errors="replace")[-size:]
        return text

    def wait(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        """Poll `check` until it returns something true; fail with the logs on timeout or on exit."""
        deadline = time.monotonic() + timeout
        while True:
            self.seen |= _descendants(self.process.pid)
            value = check()
            if value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(f"studio-nova server exited ({self.process.returncode}) "
                                     f"while waiting for {what}{self.log_tails()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{self.log_tails()}")
            time.sleep(1.0)

    def stop(self) -> list[tuple[int, int]]:
        """SIGTERM, as a service manager stops it; returns the processes it left behind (killed)."""
        self.seen |= _descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 5.0  # flow runs sit in sessions of their own: give them a moment
        while True:
            left = [(pid, start) for pid, start in self.seen if (_proc_stat(pid) or (0, -1))[1] == start]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for pid, _start in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left


@contextmanager
def _studio_nova_server(root: Path, out: Path, *args: str, **env: str) -> Iterator[_Server]:
    """`studio-nova server --nightly-out OUT --json [ARGS]` on a free port with its own PREFECT_HOME
    (where Prefect keeps its SQLite database unless `env` names another)."""
    port = free_port()
    server_env = _env(None, STUDIO_NOVA_PREFECT_PORT=str(port))
    server_env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    server_env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
    server_env.update(env)
    with open(root / "server.json", "wb") as stdout, open(root / "server.err", "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "studio_nova.app.cli", "server", "--nightly-out", str(out), "--json",
             "--home", str(root / "home"), "--logs", str(root / "logs"), *args],
            env=server_env, cwd=REPO, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
        )
    server = _Server(process, root)

    def reported() -> dict[str, Any] | None:
        try:
            return json.loads((root / "server.json").read_text())
        except ValueError:
            return None  # not written yet, or half written

    try:
        server.info = server.wait("studio-nova server to report its API", reported, 180)
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    except BaseException:
        server.stop()
        raise
    left = server.stop()
    assert server.process.returncode == 0, f"studio-nova server stopped with {server.process.returncode}"
    assert not left, f"processes left running after studio-nova server stopped: {left}"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _nightly_deployment(api: str) -> dict[str, Any]:
    return _api(api, "GET", f"/deployments/name/{NIGHTLY[0]}/{NIGHTLY[1]}")


def _nightly_runs(api: str, *states: str) -> list[dict[str, Any]]:
    """Runs of the nightly deployment of the render flow (in these states), earliest first."""
    body: dict[str, Any] = {
        "flows": {"name": {"any_": [NIGHTLY[0]]}},
        "deployments": {"name": {"any_": [NIGHTLY[1]]}},
        "sort": "EXPECTED_START_TIME_ASC",
        "limit": 200,
    }
    if states:
        body["flow_runs"] = {"state": {"type": {"any_": list(states)}}}
    return _api(api, "POST", "/flow_runs/filter", body)


def _database_errors(server: _Server) -> list[str]:
    """Log lines of the server and workers that say Prefect's own database refused a write."""
    signs = ("database is locked", "heartbeat persistence failed")
    return [f"{log.name}: {line.strip()}" for log in sorted(server.logs.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines() if any(s in line for s in signs)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def prefect_database(request) -> Iterator[dict[str, str]]:
    """The environment that puts the Prefect server's own database on SQLite (Prefect's default,
    in PREFECT_HOME) or on a fresh PostgreSQL database (deploy/README.md: the supported setup)."""
    if request.param == "sqlite":
        yield {}
        return
    with new_postgres_database("studio_nova_prefect", "postgresql+asyncpg") as url:
        yield {"PREFECT_API_DATABASE_CONNECTION_URL": url}


@pytest.mark.slow
def test_when_studio_nova_server_starts_its_scheduler_creates_the_nightly_runs_at_the_cron_times(
    tmp_path, prefect_database
):
    out = tmp_path / "out"
    out.mkdir()
    started = datetime.now(timezone.utc)
    with _studio_nova_server(tmp_path, out, **prefect_database) as server:
        assert server.info["nightly"] == {"cron": "0 1 * * *", "timezone": "UTC", "active": True}
        deployment = _nightly_deployment(server.api)
        assert deployment["paused"] is False and deployment["parameters"] == {"out": str(out)}
        assert [(s["active"], s["schedule"]["cron"], s["schedule"]["timezone"]) for s in deployment["schedules"]] \
            == [(True, "0 1 * * *", "UTC")]
        # Nobody asks for a run: only the server's scheduler service can create these.
        runs = server.wait("the server's scheduler to create the nightly runs",
                           lambda: _nightly_runs(server.api, "SCHEDULED"), timeout=60)
    assert all(r["deployment_id"] == deployment["id"] and r["auto_scheduled"] for r in runs)
    assert all(r["parameters"] == {"out": str(out)} for r in runs)
    times = [_utc(r["expected_start_time"]) for r in runs]
    assert len(times) >= 3, "Prefect keeps at least 3 runs scheduled ahead"
    assert all((t.hour, t.minute, t.second, t.microsecond) == (1, 0, 0, 0) for t in times), times
    assert times == [times[0] + timedelta(days=i) for i in range(len(times))], "one run a night, none skipped"
    assert started - timedelta(minutes=1) < times[0] <= started + timedelta(days=1, minutes=1), \
        "the first run is the next 01:00 UTC"


@pytest.mark.slow
def test_an_approved_shot_is_rendered_and_conformed_by_the_nightly_schedule_with_nobody_triggering_it(
    tmp_path, prefect_database
):
    # A cut with one marked shot, taken to review in-process with no Prefect server anywhere.
    scene = make_scene(20, W, H, seed=21, noise=0.01)
    media = _write(tmp_path / "N001.mov", scene.frames)
    edit = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
    cut = _timeline(tmp_path / "night.otio", [_clip("sh010", media, 0, 20, total=20, edit=edit)])
    out = tmp_path / "out"
    ran = _cli(None, "run", str(cut), "--out", str(out), "--orchestrator", "none", "--json")
    assert ran.returncode == 0, ran.stderr
    assert [s["status"] for s in json.loads(ran.stdout)["shots"]] == ["in_review"]

    # Approved from a terminal with no server in sight: only the store knows.
    approved = _cli(None, "review", "approve", "sh010", "--out", str(out), "--reviewer", "ana", "--json")
    assert approved.returncode == 0, approved.stderr
    assert "gate" not in json.loads(approved.stdout)
    assert _shot(out)["status"] == "approved" and _shot(out)["renders"] == []

    # The night comes every minute here; nothing else is called until the shot is conformed.
    with _studio_nova_server(tmp_path, out, STUDIO_NOVA_NIGHTLY_CRON="* * * * *", **prefect_database) as server:
        assert server.info["nightly"] == {"cron": "* * * * *", "timezone": "UTC", "active": True}
        server.wait("sh010 to be rendered and conformed by a scheduled nightly run",
                    lambda: _shot(out)["status"] == "conformed", timeout=240)

        # The run that rendered it (its progress artifact) is a GPU slot run sent by an
        # auto-scheduled run of the nightly (which dispatches, and is tagged on its slot runs).
        deployment = _nightly_deployment(server.api)
        slot_deployment = _api(server.api, "GET", "/deployments/name/studio-nova-render-slot/slot")
        progress = [a for a in _api(server.api, "POST", "/artifacts/filter", {}) if a["type"] == "progress"]
        assert [a["data"] for a in progress] == [100.0]
        slot = _api(server.api, "GET", f"/flow_runs/{progress[0]['flow_run_id']}")
        assert slot["deployment_id"] == slot_deployment["id"]
        [dispatcher] = [t.removeprefix("studio-nova-render-") for t in slot["tags"] if t.startswith("studio-nova-render-")]
        renderer = _api(server.api, "GET", f"/flow_runs/{dispatcher}")
        assert renderer["deployment_id"] == deployment["id"] and renderer["auto_scheduled"] is True
        assert renderer["state"]["type"] in ("RUNNING", "COMPLETED")  # it may still be finishing the conform
        assert _utc(renderer["expected_start_time"]).second == 0, "started at a cron time"
        # And nothing else was asked of the server: every deployment run is a scheduled nightly, or
        # a slot run one of them sent.
        runs = _api(server.api, "POST", "/flow_runs/filter", {"limit": 200})
        nightly_ids = {r["id"] for r in runs if r["deployment_id"] == deployment["id"] and r["auto_scheduled"]}
        for run in runs:
            if run["deployment_id"] == slot_deployment["id"]:
                assert {f"studio-nova-render-{i}" for i in nightly_ids} & set(run["tags"]), run["tags"]
            elif run["deployment_id"]:
                assert run["id"] in nightly_ids, run
        if prefect_database:
            # On PostgreSQL every worker heartbeat is stored. (On SQLite Prefect 3.8 loses one now and
            # then to "database is locked", harmlessly: see deploy/README.md.)
            assert not (tmp_path / "home" / "prefect.db").exists(), "the server used PostgreSQL"
            assert _database_errors(server) == []

    shot = _shot(out)
    [(version, status, path)] = shot["renders"]
    assert (version, status) == (1, "complete") and path.endswith("sh010_v001.mov")
    assert Path(path).is_file() and probe(path).frame_count == 20
    # The pixels are the edit: every frame within codec loss of the recolour's truth.
    from studio_nova.media.decode import read_frames
    from studio_nova.media.frames import to_float
    from studio_nova.render import qc
    from studio_nova_plugins.editors.recolor import recolor_image

    for source, rendered in zip(read_frames(probe(media), 0, 19), read_frames(probe(path), 0, 19)):
        assert qc.psnr(to_float(rendered), recolor_image(to_float(source), KEYED)[0]) > 30
    conformed = out / "conformed" / "night.otio"  # the cut's own conformed file
    cut_back = otio.adapters.read_from_file(str(conformed))
    assert {c.name: c.media_reference.target_url for c in cut_back.find_clips()}["sh010"].endswith("sh010_v001.mov")


def _shot(out: Path, name: str = "sh010") -> dict[str, Any]:
    with Store.open(f"sqlite:///{out / 'studio-nova.db'}") as store:
        [shot] = [s for s in store.shots() if s.name == name]
        return {"status": shot.status, "renders": [(r.version, r.status, r.path) for r in store.renders(shot.id)]}
