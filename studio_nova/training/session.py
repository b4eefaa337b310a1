"""The model, optimizer and loss of one training run: the part of training that touches torch.

Split from the loop (`trainer`) so that what one step computes (its noise, timestep, dropped
conditions, learning rate and the weighted flow-matching loss) sits in one place, apart from the
bookkeeping around it (data order, checkpoints, progress). Every random choice of a step is a pure
function of (seed, step), which is what makes a resumed run continue exactly; `trainer.evaluate`
reuses `Session.loss` to score an adapter on the very steps of a run.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from studio_nova.errors import TrainingError
from studio_nova.training.config import TrainConfig
from studio_nova.training.data import TrainingSample


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


class Session:
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
