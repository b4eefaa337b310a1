"""Pair-free training of the NOVA adapter on a studio's own footage (issue 5).

- `data`: the clips of a folder or a cut, as random model-size windows (`WindowDataset`);
- `degrade`: the degradation simulation (anchored control, source fidelity);
- `trainer`: `train(data, out, config)` and `evaluate`, the run itself (its public names, the
  ones below included, are all importable from here);
- `config`: `TrainConfig` and the `tiny` / `full` presets;
- `session`: the model, optimizer and loss of one step;
- `checkpoints`: writing, listing and resuming from checkpoints (exact resume);
- `contact_sheet`: what the model learns from, as a picture.

No Prefect here: `studio_nova_flows.train` wraps `train` as a flow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "TrainConfig", "TrainResult", "TrainProgress", "PRESETS", "preset"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from studio_nova.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'studio_nova.training' has no attribute {name!r}")
