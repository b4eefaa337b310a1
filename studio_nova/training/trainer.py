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
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from studio_nova.errors import CheckpointError, StudioNovaError, TrainingDataError, TrainingError
from studio_nova.training.data import TrainingData, TrainingSample, WindowDataset, WindowSampler, find_clips

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
RUN_FILE = "train.json"
STATE_FILE = "trainer_state.pt"
CONTACT_SHEET = "contact_sheet.png"
_STATE_FORMAT = 1
_LOSS_WINDOW = 20  # steps averaged for the first / last loss figures


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run computes (saved with the run).

    `frames` must be 4n+1, `height` and `width` multiples of 16 (the model's grid). The `tiny`
    preset uses 17-frame windows at 32×32 so a CPU run takes seconds; `full` is the paper's
    81 frames at 480×832.
    """

    name: str = "full"
    frames: int = 81
    height: int = 480
    width: int = 832
    steps: int = 8000
    learning_rate: float = 1e-4
    warmup_steps: int = 0  # linear learning-rate warm-up from 0 over this many steps, then constant
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0
    interval_range: tuple[int, int] = (8, 20)
    keyframe_dropout: float = 0.1
    text_dropout: float = 0.1
    loss_weighting: str = "wan"  # "wan" (bell over the timestep) | "none"
    timestep_strata: int = 20  # each run of this many steps draws one timestep per stratum (1: iid)
    window: int = -1  # cross-attention reach in latent frames recorded with the adapter (-1: chunk)
    prompt: str = ""  # text condition of clips without a caption
    max_sequence_length: int = 512
    mixed_precision: str = "auto"  # "auto" (bf16 on a GPU) | "bf16" | "no"
    gradient_checkpointing: str = "auto"  # "auto" (on a GPU) | "on" | "off"
    contact_sheet_samples: int = 4
    prefetch: int = 2  # samples decoded ahead in a background thread

    def validate(self) -> None:
        problems = []
        if self.frames < 5 or (self.frames - 1) % 4:
            problems.append(f"frames must be 4n+1 and at least 5, got {self.frames}")
        if self.height < 16 or self.width < 16 or self.height % 16 or self.width % 16:
            problems.append(f"height and width must be multiples of 16, got {self.height}x{self.width}")
        if self.steps < 1:
            problems.append(f"steps must be at least 1, got {self.steps}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            problems.append(f"learning_rate must be positive, got {self.learning_rate}")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1 or self.log_every < 1:
            problems.append("checkpoint_every, keep_checkpoints and log_every must be at least 1")
        low, high = self.interval_range
        if not 1 <= low <= high:
            problems.append(f"interval_range must be (low, high) with 1 <= low <= high, got {self.interval_range}")
        for name in ("keyframe_dropout", "text_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.timestep_strata < 1:
            problems.append(f"timestep_strata must be at least 1, got {self.timestep_strata}")
        if self.loss_weighting not in ("wan", "none"):
            problems.append(f"loss_weighting must be 'wan' or 'none', got {self.loss_weighting!r}")
        if self.mixed_precision not in ("auto", "bf16", "no"):
            problems.append(f"mixed_precision must be auto, bf16 or no, got {self.mixed_precision!r}")
        if self.gradient_checkpointing not in ("auto", "on", "off"):
            problems.append(f"gradient_checkpointing must be auto, on or off, got {self.gradient_checkpointing!r}")
        if self.window < -1:
            problems.append(f"window must be -1 or >= 0, got {self.window}")
        if problems:
            raise TrainingError("bad training config: " + "; ".join(problems), config=self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known}
        return cls(**clean)


PRESETS: dict[str, TrainConfig] = {
    # The toy model of the tests: 17-frame windows (5 latent frames) at 32x32, seconds on a CPU.
    # A toy adapter on a random toy base learns at a toy rate (1e-3 after a 40-step warm-up;
    # the real model uses the paper's 1e-4). No condition dropout: the loss curve stays clean.
    "tiny": TrainConfig(
        name="tiny", frames=17, height=32, width=32, steps=200, learning_rate=1e-3, warmup_steps=40,
        checkpoint_every=50, log_every=20, keyframe_dropout=0.0, text_dropout=0.0, contact_sheet_samples=3,
    ),
    # The paper's setup: 81 frames at 480x832, AdamW lr 1e-4, 8,000 steps.
    "full": TrainConfig(name="full"),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A preset config (`tiny` or `full`) with some fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise TrainingError(f"config must be one of {sorted(PRESETS)}, got {name!r}")
    config = replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    config.validate()
    return config


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
        return None if self.latest_checkpoint is None else self.latest_checkpoint / "nova_adapter.safetensors"

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
) -> TrainResult:
    """Train (or fine-tune, from `adapter`) the NOVA adapter on the clips of `data`; see the
    module doc. `config`: a preset name or a `TrainConfig` (default: the saved one when
    resuming, else `full`); `steps`: the step to train up to (overrides the config's);
    `base`: the base model folder (the `tiny` preset builds a tiny random one in `out` when
    none is given). Raises `TrainingError` subclasses naming the path at fault."""
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
        base_path = _base_for(cfg, base, out)
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
        _write_json(run_file, {
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
    session = _Session(cfg, base_path, init_adapter, dev)
    session.cache_text([*dataset.captions(), ""])
    sampler = WindowSampler(cfg.seed)
    history: list[float] = []
    start_step = 0
    if resume and latest is not None:
        start_step = checkpoint_step(latest)
        history = session.load_checkpoint(latest, sampler)
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
                    written = session.save_checkpoint(out, step, sampler, history)
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
                written = session.save_checkpoint(out, completed, sampler, history, position=completed)
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
    session = _Session(cfg, Path(saved["base"]), saved.get("initial_adapter"), resolve_device(device))
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


def _base_for(cfg: TrainConfig, base: str | os.PathLike[str] | None, out: Path) -> Path:
    if base is not None:
        return Path(os.path.abspath(base))
    if cfg.name == "tiny":
        from studio_nova.models.tiny import init_tiny

        folder = out / "tiny-model"
        if not (folder / "base" / "model_index.json").is_file():
            init_tiny(folder, seed=0)
            shutil.rmtree(folder / "adapter", ignore_errors=True)  # training starts from a zero adapter
        return folder / "base"
    from studio_nova.config import load_settings

    configured = load_settings().nova_base
    if not configured:
        raise TrainingError(
            "no base model: pass --base DIR (Wan2.1-VACE-1.3B-diffusers) or set STUDIO_NOVA_NOVA_BASE"
        )
    return Path(configured)


def _sample(dataset: WindowDataset, index: int) -> TrainingSample:
    try:
        return dataset[index]
    except TrainingDataError:
        raise
    except StudioNovaError as exc:
        raise TrainingDataError(f"training sample {index}: {exc.message}", path=exc.path, frame=exc.frame) from exc


# ------------------------------------------------------------------------------- checkpoints


def checkpoint_step(path: Path) -> int:
    return int(path.name.split("-", 1)[1])


def list_checkpoints(out: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints in `out/checkpoints`, oldest first."""
    folder = Path(out) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [
        p for p in folder.iterdir()
        if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()
        and (p / STATE_FILE).is_file() and (p / "nova_adapter.safetensors").is_file()
    ]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(out: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text(json.dumps(payload, indent=2))
    os.replace(temp, path)


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


# ---------------------------------------------------------------------------------- session


def _step_seed(seed: int, step: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1, np.uint64)[0] & ((1 << 63) - 1))


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of `step` (1-based): linear warm-up, then constant."""
    if cfg.warmup_steps and step <= cfg.warmup_steps:
        return cfg.learning_rate * step / cfg.warmup_steps
    return cfg.learning_rate


def timestep_index(seed: int, step: int, strata: int, table: int = 1000) -> int:
    """The timestep (an index into the scheduler's training table) of `step`.

    Stratified across steps (a low-discrepancy sampler, as in Kingma et al.'s VDM, applied over
    consecutive steps instead of a batch): steps are taken in runs of `strata`, a run visits
    every stratum of [0, 1) once in a random order, and the timestep is uniform within its
    stratum. Each timestep is still uniformly distributed, but any `strata` consecutive
    aligned steps cover the whole range, so the loss (and gradient) of a stretch of training
    no longer depends on which timesteps happened to be drawn. A pure function of its
    arguments, hence the same after a resume."""
    block, slot = divmod(step - 1, strata)
    order = np.random.default_rng([seed, block, 2]).permutation(strata)
    jitter = np.random.default_rng([seed, step, 3]).random()
    return min(int((order[slot] + jitter) / strata * table), table - 1)


def wan_loss_weights(timesteps: Any) -> Any:
    """Wan's training weight of each timestep (0..1000): a bell centred on 500, shifted to 0 at
    its lowest, normalised to mean 1 over the table."""
    import torch

    bell = torch.exp(-2.0 * ((timesteps.double() - 500.0) / 1000.0) ** 2)
    bell = bell - bell.min()
    return (bell * (len(bell) / bell.sum())).float()


class _Session:
    """The model, optimizer and loss of one run (torch lives here)."""

    def __init__(self, cfg: TrainConfig, base: Path, adapter: str | None, device: Any) -> None:
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler

        from studio_nova.pipelines.nova_pipeline import NovaPipeline

        self.cfg = cfg
        self.device = device
        cuda = device.type == "cuda"
        self.bf16 = cfg.mixed_precision == "bf16" or (cfg.mixed_precision == "auto" and cuda)
        self.checkpointing = cfg.gradient_checkpointing == "on" or (cfg.gradient_checkpointing == "auto" and cuda)
        self.dtype = torch.bfloat16 if self.bf16 else torch.float32
        if not (base / "model_index.json").is_file() and not (base / "transformer").is_dir():
            raise TrainingError("not a Wan VACE base folder in diffusers layout", path=base)
        try:
            # A new adapter's query/key/value start random (its output projection at zero): seeded
            # from the run's seed, without touching the caller's global RNG.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                self.pipe = NovaPipeline.from_local(
                    base, adapter, device=device, torch_dtype=self.dtype, window=cfg.window,
                    sample_size=[cfg.height, cfg.width],
                )
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise TrainingError(f"cannot load the model: {exc}", path=adapter or base) from exc
        self.pipe.set_progress_bar_config(disable=True)
        model = self.pipe.transformer
        model.requires_grad_(False)
        model.eval()
        model.nova_blocks.to(dtype=torch.float32)  # master weights and AdamW state in float32
        model.nova_blocks.requires_grad_(True)
        if self.checkpointing:
            model.enable_gradient_checkpointing()
        self.model = model
        self.params = model.adapter_parameters()
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.learning_rate, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.pipe.scheduler.config)
        self.sigmas = scheduler.sigmas.float().cpu()  # the 1000 training sigmas, shift applied
        self.timesteps = scheduler.timesteps.float().cpu()
        self.weights = (wan_loss_weights(self.timesteps) if cfg.loss_weighting == "wan"
                        else torch.ones_like(self.timesteps))
        self.text: dict[str, Any] = {}

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.params)

    def cache_text(self, captions: list[str]) -> None:
        """Encode every caption once; then the text encoder is not needed any more."""
        import gc

        import torch

        for caption in dict.fromkeys(captions):
            self.text[caption] = self.pipe.encode_prompt(caption, self.cfg.max_sequence_length).to(self.dtype)
        self.pipe.text_encoder = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)  # the peak reported is training's

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, sample: TrainingSample, step: int) -> float:
        """One optimisation step on `sample`; returns its (weighted) loss."""
        import torch

        loss = self.loss(sample, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, step)
        self.optimizer.step()
        return float(loss.detach())

    def loss(self, sample: TrainingSample, step: int) -> Any:
        """The weighted flow-matching loss of `sample` at training step `step` (its noise,
        timestep and dropped conditions are functions of (seed, step))."""
        import torch
        import torch.nn.functional as F

        cfg, pipe = self.cfg, self.pipe
        rng = np.random.default_rng(_step_seed(cfg.seed, step, 0))
        drop_keyframes = bool(rng.random() < cfg.keyframe_dropout)
        drop_text = bool(rng.random() < cfg.text_dropout)
        generator = torch.Generator().manual_seed(_step_seed(cfg.seed, step, 1))

        # 1. Conditions, exactly as inference builds them (no gradients: the VAE is frozen)
        with torch.no_grad():
            source, control, _ = pipe.prepare_conditions(
                sample.pseudo_source, sample.guide, sample.is_known, null_control=drop_keyframes
            )
            control = control[1:] if drop_keyframes else control
            clean = pipe.encode_video(pipe._to_pixels(sample.target))

        # 2. A point on the flow-matching path
        index = torch.tensor([timestep_index(cfg.seed, step, cfg.timestep_strata, len(self.sigmas))])
        noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32).to(self.device)
        sigma = self.sigmas[index].to(self.device).view(1, 1, 1, 1, 1)
        noisy = (1.0 - sigma) * clean + sigma * noise
        velocity = noise - clean
        context = self.text["" if drop_text else sample.caption]

        # 3. Prediction and loss (under bf16 autocast the adapter's float32 RMSNorm weights meet
        # bf16 activations; torch notes that it then skips a fused kernel, which is expected here)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
            pred = self.model(
                hidden_states=noisy.to(self.dtype),
                timestep=self.timesteps[index].to(self.device),
                encoder_hidden_states=context,
                control_hidden_states=control.to(self.dtype),
                source_latents=source.to(self.dtype),
                dense_encoder_hidden_states=self.text[""],
                return_dict=False,
            )[0]
        loss = self.weights[index].to(self.device) * F.mse_loss(pred.float(), velocity)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss is {loss.item()} at step {step} (sample {sample.index}): lower the learning rate",
                step=step,
            )
        return loss

    # ---------------------------------------------------------------------------- checkpoints

    def save_checkpoint(
        self, out: Path, step: int, sampler: WindowSampler, history: list[float], position: int | None = None
    ) -> Path:
        """`out/checkpoints/step-NNNNNN/`, written in a temporary folder and renamed."""
        import torch

        folder = out / CHECKPOINTS
        final = folder / f"step-{step:06d}"
        if final.is_dir() and (final / STATE_FILE).is_file():
            return final
        temp = folder / f".tmp-step-{step:06d}-{os.getpid()}"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        try:
            self.model.save_pretrained(temp)
            sampler_state = sampler.state_dict()
            if position is not None:
                sampler_state["position"] = position
            state = {
                "format": _STATE_FORMAT,
                "step": step,
                "optimizer": self.optimizer.state_dict(),
                "sampler": sampler_state,
                "loss_history": list(history[:step]),
                "config": json.dumps(self.cfg.to_dict()),
                "rng": _rng_state(self.device),
            }
            torch.save(state, temp / STATE_FILE)
            if final.exists():
                shutil.rmtree(final)
            os.replace(temp, final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        for old in list_checkpoints(out)[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, folder: Path, sampler: WindowSampler) -> list[float]:
        """Adapter, optimizer, data position and RNG states of a checkpoint; returns the loss history."""
        import torch

        try:
            state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            self.model.load_adapter(folder)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot read the checkpoint: {exc}", path=folder) from exc
        if state.get("format") != _STATE_FORMAT:
            raise CheckpointError(f"checkpoint format {state.get('format')} is not {_STATE_FORMAT}", path=folder)
        self.model.nova_blocks.to(dtype=torch.float32)
        self.optimizer.load_state_dict(state["optimizer"])
        try:
            sampler.load_state_dict(state["sampler"])
        except ValueError as exc:
            raise CheckpointError(str(exc), path=folder) from exc
        _set_rng_state(state["rng"], self.device)
        return [float(x) for x in state["loss_history"]]

    def throughput(self, timed_from: float | None, timed_steps: int) -> dict[str, Any]:
        import torch

        cuda = self.device.type == "cuda"
        self.sync()
        figures: dict[str, Any] = {
            "device_name": torch.cuda.get_device_name(self.device) if cuda else "cpu",
            "mixed_precision": "bf16" if self.bf16 else "no",
            "gradient_checkpointing": self.checkpointing,
            "frames": self.cfg.frames, "height": self.cfg.height, "width": self.cfg.width,
            "samples_per_s": None, "s_per_step": None, "timed_steps": timed_steps,
            "peak_memory_mb": round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1) if cuda else None,
        }
        if timed_from is not None and timed_steps > 0:
            seconds = time.perf_counter() - timed_from
            figures["s_per_step"] = round(seconds / timed_steps, 4)
            figures["samples_per_s"] = round(timed_steps / seconds, 4)
        return figures


def _rng_state(device: Any) -> dict[str, Any]:
    import torch

    np_state = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "numpy": json.dumps({**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}}),
        "python": json.dumps([version, list(internal), gauss]),
    }


def _set_rng_state(state: dict[str, Any], device: Any) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = json.loads(state["numpy"])
    np_state["state"]["key"] = np.asarray(np_state["state"]["key"], np.uint32)
    np.random.set_state(np_state)
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
