"""The `train` flow: pair-free training of the NOVA adapter on a studio's own clips, on the GPU pool.

A thin wrapper over `studio_nova.training.train`: the loss shows in the run's logs and in a
progress artifact that moves with the steps; the finished run publishes a markdown artifact with
the loss figures, the checkpoint to use, the throughput and the contact sheet of training samples.
Run it again with `resume=True` to continue from the latest checkpoint (exactly where it stopped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

if TYPE_CHECKING:  # the model stack (torch, diffusers) is an optional extra: imported when a run starts
    from studio_nova.training.trainer import TrainProgress, TrainResult


@flow(name="studio-nova-train", log_prints=True)
def train_flow(
    data: str,
    out: str,
    config: str | None = None,
    steps: int | None = None,
    resume: bool = False,
    base: str | None = None,
    adapter: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train (or, from `adapter`, fine-tune) the NOVA adapter on the clips of `data` (a folder
    or a cut) into `out`; `config` is `full` (default for a new run) or `tiny`."""
    from studio_nova.config import load_settings
    from studio_nova.media.ffmpeg_bin import configure_ffmpeg
    from studio_nova.training.trainer import train

    logger = get_run_logger()
    artifact_id = create_progress_artifact(progress=0.0, description=f"NOVA adapter training in {out}")
    shown = {"percent": -1.0}

    def progress(p: TrainProgress) -> None:
        percent = 100.0 * p.step / p.total
        if percent - shown["percent"] >= 1.0 or p.checkpoint is not None or p.step == p.total:
            shown["percent"] = percent
            update_progress_artifact(
                artifact_id=artifact_id,
                progress=percent,
                description=f"step {p.step}/{p.total}, loss {p.mean_loss:.5f} (recent mean), "
                f"{p.samples_per_s:.2f} samples/s",
            )
        if p.checkpoint is not None:
            logger.info("step %d/%d: loss %.5f, checkpoint %s", p.step, p.total, p.mean_loss, p.checkpoint)

    settings = load_settings()
    configure_ffmpeg(settings.ffmpeg)  # the training clips are decoded in this process
    result = train(data, out, config, steps=steps, resume=resume, base=base, adapter=adapter, device=device,
                   progress=progress, default_base=settings.nova_base)
    create_markdown_artifact(
        markdown=summary_markdown(result), key="studio-nova-train", description=f"NOVA adapter training in {out}"
    )
    return result.to_dict()


def summary_markdown(result: TrainResult) -> str:
    """The finished run for a person: loss, checkpoint, throughput, and what it learnt from."""
    from studio_nova.media.keyframe_files import read_png_samples
    from studio_nova.workflow.review_page import data_uri

    loss = result.loss_summary()
    speed = result.throughput
    lines = [
        f"### NOVA adapter training ({result.config.name}), step {result.final_step} of {result.config.steps}",
        "",
        "| | |",
        "| --- | --- |",
        f"| data | {result.data.root} ({len(result.data.clips)} clips, {len(result.data.skipped)} skipped) |",
        f"| loss, first {loss['window']} steps | {_number(loss['first_mean'])} |",
        f"| loss, last {loss['window']} steps | {_number(loss['last_mean'])} |",
        f"| adapter | `{result.adapter}` |",
        f"| device | {speed.get('device_name', result.device)} ({speed.get('mixed_precision', '?')}) |",
        f"| samples/s | {_number(speed.get('samples_per_s'))} |",
        f"| peak GPU memory (MB) | {_number(speed.get('peak_memory_mb'))} |",
        "",
    ]
    if result.contact_sheet.is_file():
        lines += ["target | degraded keyframe | pseudo-source:", "",
                  f"![training samples]({data_uri(read_png_samples(result.contact_sheet), max_side=1024)})", ""]
    return "\n".join(lines)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.5g}" if isinstance(value, float) else str(value)
