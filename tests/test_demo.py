"""`studio-nova demo` end to end through Prefect, judged against its ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import opentimelineio as otio
import pytest


@pytest.mark.slow
def test_demo_meets_its_quality_targets(tmp_path):
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "studio_nova.app.cli", "demo", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    edited = report["shots"]
    assert [s["name"] for s in edited] == ["street_recolor", "market_paint", "stage_background"]
    for shot in edited:
        assert shot["status"] == "conformed", shot
        assert shot["psnr_db"] >= 30.0, shot
        if shot["name"] != "stage_background":  # its edit covers all but the subject's core
            assert shot["ssim_outside_edit"] >= 0.99, shot
        assert shot["psnr_edit_db"] is not None and shot["fps"] > 0
    background = edited[2]
    assert background["psnr_db"] >= 35.0, background  # the target for background replacement
    assert background["background"]["fg_fidelity_db"] >= 60.0
    assert 0.9 < background["background"]["bg_motion_ratio"] < 1.1

    cut = otio.adapters.read_from_file(report["timeline"])
    conformed = otio.adapters.read_from_file(report["conformed"])
    assert [c.duration() for c in cut.video_tracks()[0]] == [c.duration() for c in conformed.video_tracks()[0]]
    assert len(cut.video_tracks()[0]) >= 3
    relinked = [c for c in conformed.find_clips() if "render" in c.metadata.get("studio_nova", {})]
    assert {c.name for c in relinked} == {s["name"] for s in edited}
    assert all(Path(s["render"]).exists() for s in edited)
