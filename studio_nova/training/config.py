"""What a training run computes: `TrainConfig`, its presets and their checks.

A module of its own because the config is shared by everything else in the package: the loop
(`trainer`) builds runs from it, the session (`session`) reads the model and loss settings from
it, and a checkpoint stores it, and none of them should import another just for this class.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from studio_nova.errors import TrainingError


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
