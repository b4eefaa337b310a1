"""Pair-free training of the NOVA adapter (DESIGN sections 1 and 8): `train(data, out, config)`.

The base (Wan VACE: main + sparse branch; the dense branch shares its weights) is frozen; only
the per-block cross-attention (`nova_blocks`) trains, with AdamW. Each step takes one sample of
`WindowDataset` (a clean window, its degraded-keyframe control, its pseudo-source), builds the
model inputs with the inference pipeline's own code (`NovaPipeline.prepare_conditions`: the
same VAE latents, the same VACE conditioning and mask folding), and minimises the flow-matching
loss: `x_t = (1−σ)·x_0 + σ·ε`, the model predicts `ε − x_0`, timesteps drawn uniformly from the
base scheduler's shifted 1000-step table and the squared error weighted as Wan's training
weights it (a bell over the timestep, mean 1; `loss_weighting="none"` for plain MSE). Keyframe
and text conditions are dropped now and then (`keyframe_dropout`, `text_dropout`), so the
pipeline's guidance passes have something to contrast with.

On a GPU the step runs under bf16 autocast with gradient checkpointing (the adapter's weights
and AdamW state stay float32); on the CPU in float32. Text embeddings of every caption are
computed once, then the text encoder is let go.

Outputs in `out/`:
- `train.json`: the run (config, base, starting adapter, data and its fingerprint);
- `checkpoints/step-NNNNNN/`: `nova_adapter.safetensors` + `config.json` (adapter keys only,
  loadable with `NovaTransformer3DModel.from_base(base, adapter=...)` and usable as
  STUDIO_NOVA_NOVA_ADAPTER) and `trainer_state.pt` (optimizer, data position, RNG states, loss
  history), every `checkpoint_every` steps and at the end, each written under a temporary name
  and renamed; the newest `keep_checkpoints` are kept;
- `checkpoints/contact_sheet.png` (+ `.json`): a few training samples, target | degraded
  keyframe | pseudo-source.

A run resumed from a checkpoint (`resume=True`) continues exactly: every step's sample, noise
and timestep are functions of (seed, step), and the adapter, optimizer, data position and RNG
states come back from the checkpoint, so steps after the checkpoint are the ones an
uninterrupted run takes.

This module is the run itself: it checks the run folder, feeds samples in order (prefetched in a
background thread), calls the step, keeps the loss history and says when to checkpoint. What it
leans on lives beside it: `config` (`TrainConfig`, the presets), `session` (model, optimizer and
the loss of one step) and `checkpoints` (writing, listing and resuming from checkpoints). Their
public names are re-exported here, where callers have always imported them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from studio_nova.atomic import write_json
from studio_nova.errors import (
    CheckpointError,
    StudioNovaError,
    TrainingDataError,
    TrainingError,
)
from studio_nova.training.checkpoints import (
    ADAPTER_FILE,
    CHECKPOINTS,
    STATE_FILE,
    checkpoint_step,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from studio_nova.training.config import PRESETS, TrainConfig, preset
from studio_nova.training.data import (
    TrainingData,
    TrainingSample,
    WindowDataset,
    WindowSampler,
    find_clips,
)
from studio_nova.training.session import (
    Session,
    learning_rate,
    timestep_index,
    wan_loss_weights,
)

# The public names of the training package, wherever they are defined: callers import them from here.
__all__ = [
    "train", "evaluate", "resolve_device", "TrainConfig", "PRESETS", "preset", "TrainProgress", "TrainResult",
    "ProgressFn", "RUN_FILE", "CONTACT_SHEET", "CHECKPOINTS", "STATE_FILE", "checkpoint_step", "list_checkpoints",
    "latest_checkpoint", "learning_rate", "timestep_index", "wan_loss_weights",
]

log = logging.getLogger(__name__)

RUN_FILE = "train.json"
CONTACT_SHEET = "contact_sheet.png"
_LOSS_WINDOW = 20  # steps averaged for the first / last loss figures


@dataclass(frozen=True)
class TrainProgress:
    """What a progress callback hears after every step."""

    step: int
    total: int
    loss: float
    mean_loss: float  # over the last `log_every` steps
    samples_per_s: float
    elapsed_s: float
    checkpoint: Path | None = None  # written at this step


@dataclass
class TrainResult:
    out: Path
    config: TrainConfig
    device: str
    resumed: bool
    start_step: int
    final_step: int
    loss_history: list[float]
    checkpoints: list[Path]
    latest_checkpoint: Path | None
    contact_sheet: Path
    data: TrainingData
    base: Path
    throughput: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    model: Any = field(default=None, repr=False)  # the trained NovaTransformer3DModel, in memory

    @property
    def adapter(self) -> Path | None:
        return None if self.latest_checkpoint is None else self.latest_checkpoint / ADAPTER_FILE

    def loss_summary(self, window: int = _LOSS_WINDOW) -> dict[str, Any]:
        history = self.loss_history
        if not history:
            return {"window": window, "first_mean": None, "last_mean": None, "final": None, "decrease": None}
        first = float(np.mean(history[:window]))
        last = float(np.mean(history[-window:]))
        return {"window": window, "first_mean": first, "last_mean": last, "final": history[-1],
                "decrease": (1.0 - last / first) if first else None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "config": self.config.to_dict(),
            "device": self.device,
            "base": str(self.base),
            "resumed": self.resumed,
            "start_step": self.start_step,
            "final_step": self.final_step,
            "steps_run": self.final_step - self.start_step,
            "loss": self.loss_summary(),
            "loss_history": self.loss_history,
            "checkpoint": str(self.latest_checkpoint) if self.latest_checkpoint else None,
            "adapter": str(self.adapter) if self.adapter else None,
            "checkpoints_written": [str(p) for p in self.checkpoints],
            "contact_sheet": str(self.contact_sheet),
            "data": self.data.to_dict(),
            "throughput": self.throughput,
            "seconds": round(self.seconds, 3),
        }


ProgressFn = Callable[[TrainProgress], None]


# ------------------------------------------------------------------------------------ the run


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: str | TrainConfig | None = None,
    *,
    steps: int | None = None,
    resume: bool = False,
    base: str | os.PathLike[str] | None = None,
    adapter: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: ProgressFn | None = None,
    default_base: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train (or fine-tune, from `adapter`) the NOVA adapter on the clips of `data`; see the
    module doc. `config`: a preset name or a `TrainConfig` (default: the saved one when
    resuming, else `full`); `steps`: the step to train up to (overrides the config's);
    `base`: the base model folder (the `tiny` preset builds a tiny random one in `out` when
    none is given; other presets fall back to `default_base`, the run's `nova_base` setting).
    Raises `TrainingError` subclasses naming the path at fault."""
    started = time.perf_counter()
    out = Path(os.path.abspath(out))
    data_path = Path(os.path.abspath(data))
    if out == data_path or (out.exists() and not out.is_dir()):
        raise TrainingError("--out must be a folder of its own, not the training data", path=out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. The run: a new one, or the saved one resumed
    run_file = out / RUN_FILE
    latest = latest_checkpoint(out)
    if resume:
        if not run_file.is_file() or latest is None:
            raise CheckpointError(
                "no checkpoint to resume from: start a run here without --resume first", path=out / CHECKPOINTS
            )
        saved = json.loads(run_file.read_text())
        saved_config = TrainConfig.from_dict(saved["config"])
        if isinstance(config, str) and config != saved_config.name:
            raise CheckpointError(
                f"the run here was started with --config {saved_config.name}, not {config}", path=run_file
            )
        if isinstance(config, TrainConfig) and replace(config, steps=0) != replace(saved_config, steps=0):
            raise CheckpointError("the config differs from the one this run was started with", path=run_file)
        cfg = saved_config
        base_path = Path(base) if base is not None else Path(saved["base"])
        init_adapter = saved.get("initial_adapter")
    else:
        if latest is not None:  # a run that never reached a checkpoint has nothing to lose: start over
            raise TrainingError(
                f"this folder already holds a training run (checkpoints up to step {checkpoint_step(latest)}): "
                "pass --resume to continue it, or choose another --out",
                path=out,
            )
        cfg = config if isinstance(config, TrainConfig) else preset(config or "full")
        base_path = _base_for(cfg, base, out, default_base)
        init_adapter = str(Path(adapter).resolve()) if adapter is not None else None
        saved = None
    if steps is not None:
        cfg = replace(cfg, steps=int(steps))
    cfg.validate()

    # 2. Data
    data_set = find_clips(data_path, cfg.frames, exclude=out)
    if saved is not None and saved.get("data_fingerprint") != data_set.fingerprint():
        raise CheckpointError(
            f"the training data changed since this run started ({len(data_set.clips)} clips now): resume "
            "with the same clips, or start a new run in another --out",
            path=data_path,
        )
    dataset = WindowDataset(data_set, frames=cfg.frames, height=cfg.height, width=cfg.width, seed=cfg.seed,
                            interval_range=cfg.interval_range, default_caption=cfg.prompt)
    if saved is None:
        write_json(run_file, {
            "config": cfg.to_dict(), "base": str(base_path), "initial_adapter": init_adapter,
            "data": str(data_path), "data_fingerprint": data_set.fingerprint(),
        })

    # 3. Contact sheet: what the model learns from, before it starts
    from studio_nova.training.contact_sheet import write_contact_sheet

    sheet = out / CHECKPOINTS / CONTACT_SHEET
    if saved is None or not sheet.is_file():
        write_contact_sheet(sheet, [_sample(dataset, i) for i in range(cfg.contact_sheet_samples)])

    # 4. Model, text embeddings, optimizer
    dev = resolve_device(device)
    if dev.type == "cpu" and cfg.frames * cfg.height * cfg.width > 17 * 64 * 64:
        log.warning("training %d frames at %dx%d on the CPU: expect minutes to hours per step (use a GPU)",
                    cfg.frames, cfg.width, cfg.height)
    session = Session(cfg, base_path, init_adapter, dev)
    session.cache_text([*dataset.captions(), ""])
    sampler = WindowSampler(cfg.seed)
    history: list[float] = []
    start_step = 0
    if resume and latest is not None:
        start_step = checkpoint_step(latest)
        history = load_checkpoint(latest, session, sampler)
    result = TrainResult(out, cfg, str(dev), resume, start_step, start_step, history, [], latest, sheet, data_set,
                         base_path, model=session.model)
    if start_step >= cfg.steps:
        log.info("nothing to do: the run is at step %d of %d", start_step, cfg.steps)
        result.seconds = time.perf_counter() - started
        return result

    # 5. Training loop
    log.info("training the NOVA adapter (%s, %d clips) on %s: steps %d..%d, %d trainable parameters",
             cfg.name, len(data_set.clips), dev, start_step + 1, cfg.steps, session.trainable_parameters())
    completed = start_step
    timed_from, timed_steps = None, 0
    loop_started = time.perf_counter()
    try:
        with _Prefetcher(dataset, sampler.position, cfg.steps - start_step, cfg.prefetch) as samples:
            for step in range(start_step + 1, cfg.steps + 1):
                index = sampler.next_index()
                sample = samples.get(index)
                loss = session.step(sample, step)
                history.append(loss)
                completed = step
                if step - start_step == min(3, cfg.steps - start_step):  # after warm-up
                    session.sync()
                    timed_from, timed_steps = time.perf_counter(), 0
                elif timed_from is not None:
                    timed_steps += 1
                written = None
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    written = save_checkpoint(out, step, session, sampler, history)
                    result.checkpoints.append(written)
                    result.latest_checkpoint = written
                elapsed = time.perf_counter() - loop_started
                recent = history[-cfg.log_every:]
                rate = (step - start_step) / elapsed if elapsed > 0 else 0.0
                if step % cfg.log_every == 0 or step == cfg.steps:
                    log.info("step %d/%d  loss %.5f  (mean of last %d: %.5f)  %.2f samples/s", step, cfg.steps,
                             loss, len(recent), float(np.mean(recent)), rate)
                if progress is not None:
                    progress(TrainProgress(step, cfg.steps, loss, float(np.mean(recent)), rate, elapsed, written))
    except BaseException:
        # Keep what was learnt: a Ctrl-C or a failure mid-run leaves a checkpoint of the last step done.
        if completed > start_step and (result.latest_checkpoint is None
                                       or checkpoint_step(result.latest_checkpoint) < completed):
            try:
                written = save_checkpoint(out, completed, session, sampler, history, position=completed)
                log.warning("stopped after step %d; checkpoint %s (continue with --resume)", completed, written)
            except Exception as exc:  # the original failure matters more than this one
                log.error("could not write a checkpoint after step %d: %s", completed, exc)
        raise
    result.final_step = completed
    result.throughput = session.throughput(timed_from, timed_steps)
    result.seconds = time.perf_counter() - started
    return result


def evaluate(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    steps: Any,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
) -> list[float]:
    """The loss an adapter gives on the very samples, noise and timesteps of training steps
    `steps` of the run in `out`, without training: `checkpoint` is a checkpoint folder, None
    (the run's latest) or "initial" (the adapter the run started from). Set against the
    initial adapter on the same steps, it says what training bought, free of the luck of
    which samples and timesteps a stretch of steps drew."""
    import torch

    out = Path(os.path.abspath(out))
    run_file = out / RUN_FILE
    if not run_file.is_file():
        raise CheckpointError("no training run here (no train.json)", path=out)
    saved = json.loads(run_file.read_text())
    cfg = TrainConfig.from_dict(saved["config"])
    data_set = find_clips(data, cfg.frames, exclude=out)
    dataset = WindowDataset(data_set, frames=cfg.frames, height=cfg.height, width=cfg.width, seed=cfg.seed,
                            interval_range=cfg.interval_range, default_caption=cfg.prompt)
    session = Session(cfg, Path(saved["base"]), saved.get("initial_adapter"), resolve_device(device))
    session.cache_text([*dataset.captions(), ""])
    if checkpoint != "initial":
        folder = Path(checkpoint) if checkpoint is not None else latest_checkpoint(out)
        if folder is None:
            raise CheckpointError("no checkpoint to evaluate", path=out / CHECKPOINTS)
        session.model.load_adapter(folder)
        session.model.nova_blocks.to(dtype=torch.float32)
    losses = []
    with torch.no_grad():
        for step in steps:
            losses.append(float(session.loss(_sample(dataset, int(step) - 1), int(step))))
    return losses


def resolve_device(device: str | None) -> Any:
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} asked for, but torch sees no CUDA device")
    return dev


def _base_for(
    cfg: TrainConfig, base: str | os.PathLike[str] | None, out: Path, default_base: str | os.PathLike[str] | None
) -> Path:
    if base is not None:
        return Path(os.path.abspath(base))
    if cfg.name == "tiny":
        from studio_nova.models.tiny import init_tiny

        folder = out / "tiny-model"
        if not (folder / "base" / "model_index.json").is_file():
            init_tiny(folder, seed=0)
            shutil.rmtree(folder / "adapter", ignore_errors=True)  # training starts from a zero adapter
        return folder / "base"
    if not default_base:
        raise TrainingError(
            "no base model: pass --base DIR (Wan2.1-VACE-1.3B-diffusers) or set STUDIO_NOVA_NOVA_BASE"
        )
    return Path(default_base)


def _sample(dataset: WindowDataset, index: int) -> TrainingSample:
    try:
        return dataset[index]
    except TrainingDataError:
        raise
    except StudioNovaError as exc:
        raise TrainingDataError(f"training sample {index}: {exc.message}", path=exc.path, frame=exc.frame) from exc


# --------------------------------------------------------------------------------- prefetch


class _Prefetcher:
    """Samples `first`, `first+1`, … prepared up to `depth` ahead in one background thread.
    Samples are pure functions of their index, so this changes timing, never content."""

    def __init__(self, dataset: WindowDataset, first: int, count: int, depth: int) -> None:
        self.dataset = dataset
        self.next = first
        self.end = first + count
        self.depth = max(0, depth)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nova-data") if self.depth else None
        self.pending: deque[tuple[int, Future[TrainingSample]]] = deque()

    def __enter__(self) -> "_Prefetcher":
        self._fill()
        return self

    def __exit__(self, *exc: object) -> None:
        for _, future in self.pending:
            future.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _fill(self) -> None:
        while self.pool is not None and len(self.pending) < self.depth and self.next < self.end:
            self.pending.append((self.next, self.pool.submit(_sample, self.dataset, self.next)))
            self.next += 1

    def get(self, index: int) -> TrainingSample:
        if self.pool is None:
            return _sample(self.dataset, index)
        if not self.pending or self.pending[0][0] != index:
            raise RuntimeError(f"samples must be taken in order: asked for {index}")
        _, future = self.pending.popleft()
        self._fill()
        return future.result()
