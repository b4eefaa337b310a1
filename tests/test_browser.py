"""A reviewer in a real browser: `studio-nova server`, a run up to the gate, the paused run in the
Prefect UI (headless Debian Chromium), keyframes visible, approve through the form, render.

Needs `apt-get install chromium` and `pip install playwright` (see .ci/run). The screenshot of the
review page is kept in STUDIO_NOVA_TEST_ARTIFACTS (default: .artifacts/ in the repository).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import opentimelineio as otio
import pytest
from test_pipeline import KEYED, H, W, _clip, _timeline, _write

from studio_nova.app.server import api_url, free_port, is_healthy
from studio_nova.footage.synthetic import make_scene
from studio_nova.store import Store

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("STUDIO_NOVA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def _env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["STUDIO_NOVA_PREFECT_PORT"] = str(port)
    return env


def _wait(what: str, check, timeout: float = 240.0, logs: Path | None = None):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            tail = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log"))) if logs else ""
            raise AssertionError(f"timed out waiting for {what}{tail}")
        time.sleep(1.0)
    return value


@pytest.fixture
def studio_server(tmp_path):
    """`studio-nova server` as a person starts it (discovered by port, no PREFECT_API_URL)."""
    port = free_port()
    logs = tmp_path / "logs"
    process = subprocess.Popen(
        [sys.executable, "-m", "studio_nova.app.cli", "server", "--port", str(port), "--home", str(tmp_path / "home"),
         "--logs", str(logs)],
        env=_env(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _wait("the server", lambda: is_healthy(api_url("127.0.0.1", port)) or process.poll() is not None, 180)
        assert process.poll() is None, process.communicate()
        yield port, logs, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_reviewer_sees_keyframes_in_the_prefect_ui_and_approves_through_its_form(studio_server, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install -y chromium"
    port, logs, server_process = studio_server
    scene = make_scene(30, W, H, seed=4, noise=0.01)
    media = _write(tmp_path / "E001.mov", scene.frames)
    edit = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
    cut = _timeline(tmp_path / "browser.otio", [_clip("sh010", media, 0, 21, total=30, edit=edit)])
    out = tmp_path / "out"

    started = subprocess.run(
        [sys.executable, "-m", "studio_nova.app.cli", "run", str(cut), "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=300, env=_env(port), cwd=REPO,
    )
    assert started.returncode == 0, started.stderr
    report = json.loads(started.stdout)
    assert report["shots"][0]["status"] == "in_review"
    [run_id] = report["gates"].values()
    store = Store.open(f"sqlite:///{out / 'studio-nova.db'}")
    try:
        [shot] = store.shots()
        frames = [k.source_frame for k in store.keyframes(shot.id)]
        assert frames == [0, 10, 20]

        artifacts = Path(os.environ.get("STUDIO_NOVA_TEST_ARTIFACTS", REPO / ".artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh profile every time
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = browser.new_page()
                url = f"http://127.0.0.1:{port}/runs/flow-run/{run_id}"

                def suspended() -> bool:
                    page.goto(url)
                    resume = page.get_by_role("button", name="Resume")
                    try:
                        resume.first.wait_for(state="visible", timeout=5000)
                    except PlaywrightTimeout:  # not paused yet
                        return False
                    return True

                _wait("the Resume button of the paused run", suspended, logs=logs)
                page.get_by_role("button", name="Resume").first.click()
                dialog = page.get_by_role("dialog")
                images = dialog.locator("img.markdown-renderer__image")
                images.first.wait_for(state="visible", timeout=30000)
                assert images.count() == 2 * len(frames)
                shown = page.evaluate(
                    "() => Array.from(document.querySelectorAll('[role=dialog] img.markdown-renderer__image'))"
                    ".map(i => [i.alt, i.naturalWidth, i.naturalHeight, i.complete, i.src.slice(0, 23)])"
                )
                assert [s[0] for s in shown] == [f"{kind} {f}" for f in frames for kind in ("original", "edited")]
                assert all(w == W and h == H and done and src == "data:image/jpeg;base64," for _, w, h, done, src in shown)
                boxes = [images.nth(i).bounding_box() for i in range(images.count())]
                for row in range(len(frames)):  # original and edited side by side, original first
                    left, right = boxes[2 * row], boxes[2 * row + 1]
                    # Same row: the two images overlap vertically by most of their height (the
                    # markdown renderer may offset one by a few pixels); edited to the right.
                    overlap = min(left["y"] + left["height"], right["y"] + right["height"]) - max(left["y"], right["y"])
                    assert overlap > 0.8 * min(left["height"], right["height"]), (left, right)
                    assert right["x"] >= left["x"] + left["width"] - 1, (left, right)
                    if row:  # each keyframe's pair below the previous one
                        assert left["y"] >= boxes[2 * row - 2]["y"] + 0.5 * boxes[2 * row - 2]["height"]
                images.first.scroll_into_view_if_needed()
                assert dialog.get_by_text("Reviewer").first.is_visible()
                page.screenshot(path=str(artifacts / "review-page.png"))

                dialog.get_by_role("textbox").first.fill("dana")  # reviewer; decision defaults to approve
                dialog.get_by_role("button", name="Submit").click()
                _wait("the shot to render and conform", lambda: store.shot(shot.id).status == "conformed", 300, logs)

                page.goto(url)
                page.get_by_text("Completed").first.wait_for(state="visible", timeout=60000)
            finally:
                browser.close()

        [review] = store.reviews(shot.id)
        assert (review.decision, review.reviewer, review.keyframe_version) == ("approved", "dana", 1)
        conformed = otio.adapters.read_from_file(str(out / "conformed" / f"{cut.stem}.otio"))
        [clip] = list(conformed.find_clips())
        assert clip.media_reference.target_url.endswith("renders/sh010/sh010_v001.mov")
        assert (artifacts / "review-page.png").stat().st_size > 20_000
    finally:
        store.close()

    server_process.send_signal(signal.SIGINT)  # Ctrl-C stops the server and its workers cleanly
    assert server_process.wait(timeout=60) == 0
    assert not is_healthy(api_url("127.0.0.1", port))
