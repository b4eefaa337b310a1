"""The NOVA adapter trainer (issue 5) at toy size on the CPU: checkpoints, exact resume, errors,
gradient checkpointing, the CLI and the Prefect flow. The 200-step acceptance runs are in
test_training_acceptance.py (slow)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nova_fixtures import _one_thread, tiny  # noqa: E402,F401  (shared fixtures)
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from studio_nova.app.cli import main  # noqa: E402
from studio_nova.errors import CheckpointError, TrainingError  # noqa: E402
from studio_nova.models.nova_transformer import (  # noqa: E402
    ADAPTER_FILE,
    ADAPTER_PREFIX,
    NovaTransformer3DModel,
    load_vace_transformer,
)
from studio_nova.training.checkpoints import save_checkpoint  # noqa: E402
from studio_nova.training.data import WindowSampler  # noqa: E402
from studio_nova.training.synthetic import write_clips  # noqa: E402
from studio_nova.training.trainer import (  # noqa: E402
    STATE_FILE,
    TrainConfig,
    learning_rate,
    list_checkpoints,
    preset,
    timestep_index,
    train,
    wan_loss_weights,
)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train-clips")
    write_clips(folder)
    (folder / "clip2.txt").write_text("a harbour with boats")  # a caption: text dropout has an effect
    return folder


def _config(**changes) -> TrainConfig:
    return replace(preset("tiny"), **{"steps": 4, "checkpoint_every": 2, "contact_sheet_samples": 1, **changes})


def _tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_checkpoints_hold_adapter_keys_only_and_the_base_stays_bit_identical(tiny, clips, tmp_path):
    before = _tree_hash(tiny.base)
    result = train(clips, tmp_path / "run", _config(), base=tiny.base, device="cpu")
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-000002", "step-000004"]
    assert result.final_step == 4 and len(result.loss_history) == 4

    adapter = result.latest_checkpoint / ADAPTER_FILE
    with safe_open(str(adapter), framework="pt") as fh:
        keys = set(fh.keys())
        options = json.loads(fh.metadata()["nova"])
    assert keys == set(result.model.adapter_state_dict()) and all(k.startswith(ADAPTER_PREFIX) for k in keys)
    assert options["sample_size"] == [32, 32], "the adapter records the size it was trained at"
    tensors = load_file(str(adapter))
    assert any(float(v.abs().max()) > 0 for k, v in tensors.items() if "to_out" in k), "training moved the adapter"

    # The base: same files on disk, and the trained model's base weights equal a fresh load bit for bit.
    assert _tree_hash(tiny.base) == before
    fresh = load_vace_transformer(tiny.base).state_dict()
    trained = result.model.vace.state_dict()
    assert fresh.keys() == trained.keys() and all(torch.equal(fresh[k], trained[k]) for k in fresh)

    state = torch.load(result.latest_checkpoint / STATE_FILE, weights_only=True)
    assert len(state["optimizer"]["state"]) == len(result.model.adapter_parameters())
    assert state["sampler"] == {"seed": 0, "position": 4} and state["loss_history"] == result.loss_history

    # What the pipeline loads: base + this adapter.
    model = NovaTransformer3DModel.from_base(tiny.base, adapter=result.latest_checkpoint)
    assert all(torch.equal(model.adapter_state_dict()[k], tensors[k]) for k in tensors)
    assert (tmp_path / "run" / "checkpoints" / "contact_sheet.png").is_file()


def test_a_run_interrupted_and_resumed_continues_exactly_as_an_uninterrupted_run(tiny, clips, tmp_path):
    cfg = _config(steps=6, checkpoint_every=4, keyframe_dropout=0.5, text_dropout=0.5, warmup_steps=4)
    whole = train(clips, tmp_path / "whole", cfg, base=tiny.base, device="cpu")

    def ctrl_c_after_step_3(progress):
        if progress.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(clips, tmp_path / "parts", cfg, base=tiny.base, device="cpu", progress=ctrl_c_after_step_3)
    assert [p.name for p in list_checkpoints(tmp_path / "parts")] == ["step-000003"], "the stop kept step 3"
    np.random.seed(1234)  # whatever the global RNGs hold now, the resumed run restores its own
    torch.manual_seed(1234)
    second = train(clips, tmp_path / "parts", resume=True, device="cpu")
    assert (second.start_step, second.final_step, second.resumed) == (3, 6, True)
    assert second.loss_history == whole.loss_history, "every step's loss is the same, bit for bit"
    a, b = whole.model.adapter_state_dict(), second.model.adapter_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in list_checkpoints(tmp_path / "parts")] == ["step-000003", "step-000004", "step-000006"]


def test_a_checkpoint_appears_whole_or_not_at_all_and_replaces_an_incomplete_one(tmp_path):
    class Model:  # stands in for the NovaTransformer3DModel: writes the adapter, or fails half-way
        fail = False

        def save_pretrained(self, folder):
            (folder / ADAPTER_FILE).write_bytes(b"adapter")
            if self.fail:
                raise OSError("disk full")

    session = SimpleNamespace(model=Model(), optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                              cfg=replace(preset("tiny"), keep_checkpoints=2), device=torch.device("cpu"))
    folder = tmp_path / "checkpoints"
    stale = folder / "step-000002"  # left by a crash: no trainer state, so not a checkpoint
    stale.mkdir(parents=True)
    (stale / "junk").write_bytes(b"x")
    assert list_checkpoints(tmp_path) == []

    written = save_checkpoint(tmp_path, 2, session, WindowSampler(0), [1.0, 2.0])
    assert written == stale and sorted(p.name for p in stale.iterdir()) == [ADAPTER_FILE, STATE_FILE]
    assert torch.load(stale / STATE_FILE, weights_only=True)["loss_history"] == [1.0, 2.0]

    session.model.fail = True
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 4, session, WindowSampler(0), [1.0, 2.0, 3.0, 4.0])
    assert [p.name for p in folder.iterdir()] == ["step-000002"], "nothing of the failed checkpoint is left"
    assert save_checkpoint(tmp_path, 2, session, WindowSampler(0), []) == stale, "a complete one is kept as is"

    session.model.fail = False
    for step in (4, 6):
        save_checkpoint(tmp_path, step, session, WindowSampler(0), [0.0] * step)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000004", "step-000006"], "the newest 2 are kept"
    assert sorted(p.name for p in folder.iterdir()) == ["step-000004", "step-000006"]


def test_resume_with_no_checkpoint_is_an_error_naming_the_folder(clips, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume from") as error:
        train(clips, tmp_path / "empty", resume=True, device="cpu")
    assert error.value.path == tmp_path / "empty" / "checkpoints"


def test_a_used_run_folder_is_refused_without_resume_and_resume_refuses_changed_data(tiny, clips, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(clips, data)
    out = tmp_path / "run"
    train(data, out, _config(steps=2), base=tiny.base, device="cpu")
    with pytest.raises(TrainingError, match="already holds a training run .*step 2.*--resume") as error:
        train(data, out, _config(steps=2), base=tiny.base, device="cpu")
    assert error.value.path == out
    write_clips(data / "more", [(20, 32, 32)], seed=77)
    with pytest.raises(CheckpointError, match="training data changed") as error:
        train(data, out, steps=4, resume=True, device="cpu")
    assert error.value.path == data
    with pytest.raises(CheckpointError, match="started with --config tiny, not full"):
        train(clips, out, "full", steps=4, resume=True, device="cpu")


def test_the_run_folder_must_not_be_the_data_and_the_config_is_checked(clips, tmp_path):
    with pytest.raises(TrainingError, match="not the training data") as error:
        train(clips, clips, _config(), device="cpu")
    assert error.value.path == clips
    with pytest.raises(TrainingError, match="frames must be 4n\\+1"):
        train(clips, tmp_path / "bad", _config(frames=16), device="cpu")
    with pytest.raises(TrainingError, match="config must be one of"):
        preset("huge")
    with pytest.raises(TrainingError, match="not a Wan VACE base folder") as error:
        train(clips, tmp_path / "nobase", _config(), base=tmp_path, device="cpu")
    assert error.value.path == tmp_path


def test_fine_tuning_starts_from_the_given_adapter(tiny, clips, tmp_path):
    result = train(clips, tmp_path / "ft", _config(steps=1, learning_rate=1e-12), base=tiny.base,
                   adapter=tiny.adapter, device="cpu")
    start = load_file(str(tiny.adapter))
    got = result.model.adapter_state_dict()
    assert all(torch.allclose(got[k], start[k], atol=1e-9) for k in start)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny):
    model = NovaTransformer3DModel.from_base(tiny.base, adapter=tiny.adapter)  # a non-zero adapter
    model.requires_grad_(False)
    model.nova_blocks.requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    inputs = dict(
        hidden_states=torch.randn(1, 16, 3, 4, 4, generator=g), timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 5, 32, generator=g),
        control_hidden_states=torch.randn(1, 96, 3, 4, 4, generator=g),
        source_latents=torch.randn(1, 16, 3, 4, 4, generator=g),
    )

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss = model(**inputs, return_dict=False)[0].square().mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain = loss_and_grads()
    model.enable_gradient_checkpointing()
    assert model.gradient_checkpointing
    ckpt_loss, ckpt = loss_and_grads()
    assert set(plain) == set(ckpt) == {n for n, p in model.named_parameters() if n.startswith("nova_blocks.")}
    assert torch.equal(plain_loss, ckpt_loss)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7)
    with torch.no_grad():  # off when autograd is off: the inference path is unchanged
        assert torch.equal(model(**inputs, return_dict=False)[0], model(**inputs, return_dict=False)[0])


def test_the_gpu_recipe_bf16_autocast_with_gradient_checkpointing_trains_the_float32_adapter(tiny, clips, tmp_path):
    """What `auto` picks on a GPU, run here on the CPU (torch autocasts to bf16 on both)."""
    plain = train(clips, tmp_path / "fp32", _config(steps=2), base=tiny.base, device="cpu")
    mixed = train(clips, tmp_path / "bf16", _config(steps=2, mixed_precision="bf16", gradient_checkpointing="on"),
                  base=tiny.base, device="cpu")
    assert mixed.throughput["mixed_precision"] == "bf16" and mixed.throughput["gradient_checkpointing"] is True
    assert mixed.model.gradient_checkpointing and next(mixed.model.vace.parameters()).dtype == torch.bfloat16
    assert {p.dtype for p in mixed.model.adapter_parameters()} == {torch.float32}
    assert mixed.loss_history == pytest.approx(plain.loss_history, rel=0.05)
    a, b = plain.model.adapter_state_dict(), mixed.model.adapter_state_dict()
    moved = [k for k in a if "to_out.weight" in k]
    assert all(float(b[k].abs().max()) > 0 for k in moved)
    for k in moved:  # the same update, up to bf16 rounding
        assert float(torch.nn.functional.cosine_similarity(a[k].flatten(), b[k].flatten(), dim=0)) > 0.95


def test_timesteps_are_stratified_over_each_run_of_steps_and_weighted_as_wan():
    strata = 20
    for block in range(3):
        picks = [timestep_index(0, step, strata) for step in range(block * strata + 1, (block + 1) * strata + 1)]
        assert sorted(p * strata // 1000 for p in picks) == list(range(strata)), "one timestep per stratum"
    assert [timestep_index(0, s, 20) for s in range(1, 41)] == [timestep_index(0, s, 20) for s in range(1, 41)]
    assert [timestep_index(0, s, 20) for s in range(1, 21)] != [timestep_index(1, s, 20) for s in range(1, 21)]
    weights = wan_loss_weights(torch.linspace(1000.0, 1.0, 1000))
    assert abs(float(weights.mean()) - 1.0) < 1e-5 and float(weights.min()) == 0.0
    assert abs(int(weights.argmax()) - 500) <= 1
    cfg = replace(preset("tiny"), learning_rate=1e-3, warmup_steps=4)
    assert [learning_rate(cfg, s) for s in (1, 2, 4, 5, 100)] == pytest.approx([2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3])


def test_cli_train_reports_json_and_errors_name_the_path(tiny, clips, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--data", str(clips), "--out", str(out), "--config", "tiny", "--steps", "2",
                 "--base", str(tiny.base), "--device", "cpu", "--checkpoint-every", "1", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["final_step"], report["steps_run"], report["resumed"]) == (2, 2, False)
    assert len(report["loss_history"]) == 2 and report["loss"]["final"] == report["loss_history"][-1]
    assert report["adapter"] == str(out / "checkpoints" / "step-000002" / ADAPTER_FILE)
    assert report["data"]["clips"] == 3 and report["config"]["name"] == "tiny"
    assert set(report["throughput"]) >= {"samples_per_s", "s_per_step", "peak_memory_mb", "device_name"}
    assert report["throughput"]["peak_memory_mb"] is None, "no GPU, no GPU figure"

    code = main(["train", "--data", str(clips), "--out", str(tmp_path / "none"), "--resume", "--json"])
    assert code == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "CheckpointError" and error["path"] == str(tmp_path / "none" / "checkpoints")
    assert main(["train", "--data", str(clips), "--out", str(out), "--resume", "--lr", "0.1"]) == 2


def test_the_train_flow_shows_progress_and_publishes_a_summary_with_the_contact_sheet(tiny, clips, tmp_path):
    pytest.importorskip("prefect")
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.testing.utilities import prefect_test_harness

    from studio_nova_flows.train import train_flow

    with prefect_test_harness():
        state = train_flow(str(clips), str(tmp_path / "flow"), config="tiny", steps=3, base=str(tiny.base),
                           device="cpu", return_state=True)
        report = state.result()
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert report["final_step"] == 3 and Path(report["adapter"]).is_file()
    progress = [a for a in artifacts if a.type == "progress"]
    assert len(progress) == 1 and progress[0].data == pytest.approx(100.0)
    assert "step 3/3, loss" in progress[0].description
    [summary] = [a for a in artifacts if a.key == "studio-nova-train"]
    assert "step 3 of 3" in summary.data and "data:image/jpeg;base64," in summary.data
    assert str(report["adapter"]) in summary.data
