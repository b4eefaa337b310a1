"""Acceptance of issue 5 on the CPU: the tiny config, 200 steps on synthetic clips, fixed seeds.

- the mean loss of the last 20 steps is at least 20% below that of the first 20;
- that is learning, not the luck of the draw: the untrained adapter scores alike on both stretches
  of steps, and the trained one beats it by 20% on the very samples, noise and timesteps of the
  last 20 steps;
- a run stopped at step 100 and resumed reaches the same step-200 loss (relative difference
  <= 1e-4; it is in fact bit-identical) and the same adapter;
- the checkpoint holds adapter keys only, and the base weights are bit-identical after training.

About a minute on two CPU cores, hence `slow`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nova_fixtures import _one_thread, tiny  # noqa: E402,F401  (shared fixtures)
from safetensors import safe_open  # noqa: E402

from studio_nova.models.nova_transformer import ADAPTER_FILE, ADAPTER_PREFIX, load_vace_transformer  # noqa: E402
from studio_nova.training.synthetic import write_clips  # noqa: E402
from studio_nova.training.trainer import evaluate, train  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("acceptance-clips")
    write_clips(folder)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(tiny, clips, tmp_path_factory):
    return train(clips, tmp_path_factory.mktemp("run") / "whole", "tiny", base=tiny.base, device="cpu")


def test_200_tiny_steps_lower_the_loss_by_a_fifth_and_it_is_learning_not_luck(uninterrupted, clips):
    run = uninterrupted
    assert run.final_step == 200 and len(run.loss_history) == 200
    loss = run.loss_summary()
    first, last = loss["first_mean"], loss["last_mean"]
    print(f"\nloss: first 20 steps {first:.4f}, last 20 steps {last:.4f}, decrease {loss['decrease']:.1%}")
    assert last <= 0.8 * first

    untrained_first = np.mean(evaluate(clips, run.out, range(1, 21), checkpoint="initial", device="cpu"))
    untrained_last = np.mean(evaluate(clips, run.out, range(181, 201), checkpoint="initial", device="cpu"))
    print(f"untrained adapter: steps 1-20 {untrained_first:.4f}, steps 181-200 {untrained_last:.4f}")
    assert abs(untrained_last / untrained_first - 1.0) < 0.05, "the two stretches of steps are alike"
    assert last <= 0.8 * untrained_last, "the trained adapter beats the untrained one on the same steps"


def test_the_checkpoint_holds_the_adapter_only_and_the_base_is_untouched(uninterrupted, tiny):
    with safe_open(str(uninterrupted.latest_checkpoint / ADAPTER_FILE), framework="pt") as fh:
        keys = set(fh.keys())
    assert keys == set(uninterrupted.model.adapter_state_dict()) and all(k.startswith(ADAPTER_PREFIX) for k in keys)
    fresh = load_vace_transformer(tiny.base).state_dict()
    trained = uninterrupted.model.vace.state_dict()
    assert all(torch.equal(fresh[k], trained[k]) for k in fresh)


def test_a_run_stopped_at_step_100_and_resumed_reaches_the_same_step_200(uninterrupted, tiny, clips, tmp_path):
    stopped = train(clips, tmp_path / "parts", "tiny", steps=100, base=tiny.base, device="cpu")
    assert stopped.final_step == 100 and (stopped.latest_checkpoint.name == "step-000100")
    resumed = train(clips, tmp_path / "parts", steps=200, resume=True, device="cpu")
    assert (resumed.start_step, resumed.final_step) == (100, 200)
    expected, got = uninterrupted.loss_history[-1], resumed.loss_history[-1]
    print(f"\nstep-200 loss: uninterrupted {expected!r}, resumed {got!r}")
    assert abs(got - expected) <= 1e-4 * abs(expected)
    assert resumed.loss_history == uninterrupted.loss_history
    a, b = uninterrupted.model.adapter_state_dict(), resumed.model.adapter_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
