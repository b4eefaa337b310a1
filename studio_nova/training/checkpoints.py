"""Checkpoints of a training run: which exist, how one is written, and how a run resumes from one.

A checkpoint is a contract between processes, not a detail of the loop: a resumed run, `evaluate`
and the inference pipeline (which loads the adapter as STUDIO_NOVA_NOVA_ADAPTER) all read what a
training run wrote, possibly after it crashed. So its layout, its completeness rule and the state
it carries (optimizer, data position, loss history and the global RNG states, for an exact
resume) are kept here, in one place.

`out/checkpoints/step-NNNNNN/` holds `nova_adapter.safetensors` + `config.json` (the adapter, as
`NovaTransformer3DModel.save_pretrained` writes it) and `trainer_state.pt`. It is written through
`studio_nova.atomic` as one folder, so it appears whole or not at all; only folders holding both
files count as checkpoints.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio_nova.atomic import atomic_path
from studio_nova.errors import CheckpointError
from studio_nova.training.data import WindowSampler

if TYPE_CHECKING:
    from studio_nova.training.session import Session

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
# = studio_nova.models.nova_transformer.ADAPTER_FILE (not imported: that module loads torch)
ADAPTER_FILE = "nova_adapter.safetensors"
_STATE_FORMAT = 1


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
        and (p / STATE_FILE).is_file() and (p / ADAPTER_FILE).is_file()
    ]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(out: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def save_checkpoint(
    out: Path, step: int, session: Session, sampler: WindowSampler, history: list[float], position: int | None = None
) -> Path:
    """`out/checkpoints/step-NNNNNN/` of the session's adapter and state after `step`, published
    as a whole (an incomplete folder of that name is replaced; a complete one is kept); then only
    the newest `keep_checkpoints` are kept. `position` overrides the sampler's data position."""
    import torch

    final = out / CHECKPOINTS / f"step-{step:06d}"
    if final.is_dir() and (final / STATE_FILE).is_file():
        return final
    with atomic_path(final, folder=True) as temp:
        session.model.save_pretrained(temp)
        sampler_state = sampler.state_dict()
        if position is not None:
            sampler_state["position"] = position
        state = {
            "format": _STATE_FORMAT,
            "step": step,
            "optimizer": session.optimizer.state_dict(),
            "sampler": sampler_state,
            "loss_history": list(history[:step]),
            "config": json.dumps(session.cfg.to_dict()),
            "rng": _rng_state(session.device),
        }
        torch.save(state, temp / STATE_FILE)
    for old in list_checkpoints(out)[:-session.cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(folder: Path, session: Session, sampler: WindowSampler) -> list[float]:
    """Adapter, optimizer, data position and RNG states of a checkpoint, into `session` and
    `sampler`; returns the loss history."""
    import torch

    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        session.model.load_adapter(folder)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot read the checkpoint: {exc}", path=folder) from exc
    if state.get("format") != _STATE_FORMAT:
        raise CheckpointError(f"checkpoint format {state.get('format')} is not {_STATE_FORMAT}", path=folder)
    session.model.nova_blocks.to(dtype=torch.float32)
    session.optimizer.load_state_dict(state["optimizer"])
    try:
        sampler.load_state_dict(state["sampler"])
    except ValueError as exc:
        raise CheckpointError(str(exc), path=folder) from exc
    _set_rng_state(state["rng"], session.device)
    return [float(x) for x in state["loss_history"]]


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
