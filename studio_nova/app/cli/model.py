"""`model init`, `bench model` and `train`: the NOVA model's checkpoints, cost and training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from studio_nova.app.cli.output import JsonFlag, emit, run_settings, usage_error
from studio_nova.errors import StudioNovaError

model_app = typer.Typer(help="Model checkpoints.")
bench_app = typer.Typer(help="Benchmarks that write their figures as JSON.")
Config = Literal["tiny", "full"]


@model_app.command("init")
def init(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="where base/ and adapter/ are written", show_default=False)],
    tiny: Annotated[bool, typer.Option("--tiny", help="tiny random weights (tests, CPU demo of --backend nova)")] = False,
    as_json: JsonFlag = False,
) -> int:
    """Write a NOVA base + adapter in the real formats."""
    from studio_nova.models.tiny import init_tiny

    if not tiny:
        raise StudioNovaError(
            "only --tiny checkpoints can be written here (real weights come from a local "
            "Wan2.1-VACE-1.3B-diffusers folder: set STUDIO_NOVA_NOVA_BASE)"
        )
    info = init_tiny(folder).to_dict()
    emit(as_json, info, f"export STUDIO_NOVA_NOVA_BASE={info['base']} STUDIO_NOVA_NOVA_ADAPTER={info['adapter']}")
    return 0


@bench_app.command("model")
def bench_model(
    config: Annotated[Config, typer.Option(help="model size")] = "tiny",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N")] = "cpu",
    steps: Annotated[Optional[int], typer.Option(help="denoising steps per chunk (default: 50 full, 2 tiny)")] = None,
    measure_steps: Annotated[Optional[int], typer.Option(help="steps actually timed (rest extrapolated)")] = None,
    window: Annotated[int, typer.Option(help="± latent frames of the windowed variant")] = 2,
    no_cfg: Annotated[bool, typer.Option("--no-cfg", help="no classifier-free guidance batch")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the transformer")] = False,
    output: Annotated[Optional[Path], typer.Option(help="also write the JSON figures to this file")] = None,
    as_json: JsonFlag = False,
) -> int:
    """Per-chunk cost of plain VACE vs NOVA (cached/recomputed, full/windowed)."""
    from studio_nova_benchmarks.nova_model import bench_model as measure

    try:
        result = measure(config, device, steps=steps, measure_steps=measure_steps, window=window, cfg=not no_cfg,
                         compile=compile)
    except ValueError as exc:
        return usage_error(str(exc))
    text = json.dumps(result, indent=2, default=str)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
    emit(as_json, result, text)
    return 0


def train(
    data: Annotated[Path, typer.Option(
        help="a folder of clips (searched recursively), one clip, or a cut (.otio .edl .xml .fcpxml .aaf)",
        show_default=False)],
    out: Annotated[Path, typer.Option(help="run folder: checkpoints, contact sheet, train.json", show_default=False)],
    config: Annotated[Optional[Config], typer.Option(
        help="full: 81 frames at 480x832 (default for a new run); tiny: 17 frames at 32x32 on a tiny random base "
             "(tests, CPU); with --resume: the run's own")] = None,
    steps: Annotated[Optional[int], typer.Option(help="train up to this step (default: full 8000, tiny 200)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from its latest checkpoint")] = False,
    base: Annotated[Optional[Path], typer.Option(
        help="base model folder, diffusers layout (default: STUDIO_NOVA_NOVA_BASE; tiny: a tiny random base "
             "written into --out)")] = None,
    adapter: Annotated[Optional[Path], typer.Option(
        help="fine-tune this adapter (.safetensors or folder) instead of a new one")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N (default: STUDIO_NOVA_DEVICE)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="AdamW learning rate (default: full 1e-4)")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="steps between checkpoints")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of the data order, degradations and noise")] = None,
    window: Annotated[Optional[int], typer.Option(
        help="cross-attention reach (± latent frames) recorded with the adapter; -1 whole chunk")] = None,
    as_json: JsonFlag = False,
) -> int:
    """Train or fine-tune the NOVA adapter on your own clips (no edited pairs needed)."""
    from studio_nova.training.trainer import preset
    from studio_nova.training.trainer import train as run_training

    overrides = {"learning_rate": lr, "checkpoint_every": checkpoint_every, "seed": seed, "window": window}
    given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
    if resume and given:
        return usage_error(f"{', '.join(given)} cannot change a resumed run (only --steps can)")
    chosen = config if resume else preset(config or "full", **overrides)
    settings = run_settings()
    result = run_training(str(data), str(out), chosen, steps=steps, resume=resume,
                          base=str(base) if base else None, adapter=str(adapter) if adapter else None,
                          device=device or settings.device, default_base=settings.nova_base)
    payload = result.to_dict()
    loss = payload["loss"]
    human = f"trained steps {result.start_step + 1}..{result.final_step} of {result.config.steps} on {result.device}"
    if len(result.loss_history) >= 2 * loss["window"]:
        human += (f"\nloss: first {loss['window']} steps {loss['first_mean']:.5f}, last {loss['window']} steps "
                  f"{loss['last_mean']:.5f} ({100 * loss['decrease']:.1f}% lower)")
    elif result.loss_history:
        human += f"\nloss: mean of the {len(result.loss_history)} steps so far {loss['first_mean']:.5f}"
    human += f"\nadapter: {payload['adapter']}  (STUDIO_NOVA_NOVA_ADAPTER)\ncontact sheet: {payload['contact_sheet']}"
    if result.data.skipped:
        human += f"\nskipped {len(result.data.skipped)} clips: " + "; ".join(
            f"{s.path.name} ({s.reason})" for s in result.data.skipped)
    emit(as_json, payload, human)
    return 0
