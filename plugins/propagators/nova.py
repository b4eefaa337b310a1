"""The `nova` propagator: the NOVA dual-branch diffusion model (DESIGN sections 7 and 8).

Same per-chunk contract as `flow`: keyframes and anchors (the previous chunk's overlap) are the
known frames of the sparse branch, the frames between them carry the linearly interpolated
keyframes, the source goes to the dense branch. The model runs at its own resolution (the area
its adapter was trained at, the source's aspect ratio, multiples of 16); the result comes back at
full resolution and bit depth as

    out = source + m * upscale(model_output - model(source through the VAE))

so the edit, not the model's rendering of the source, is what is carried up: unedited detail
stays the source's own, and where `m` is 0 the pixel *is* the source pixel. `m` is the edit mask:
the artist's mask at keyframes, "differs from the source" at anchors, and elsewhere estimated
from how far the model's output departs from the source's VAE reconstruction (`mask_low` ..
`mask_high`, in [0, 1] units; VAE loss cancels out in that difference). Keyframes and anchors
come back as they are, at full resolution.

Weights only from local folders (`STUDIO_NOVA_NOVA_BASE`, `STUDIO_NOVA_NOVA_ADAPTER`); torch,
diffusers and transformers are imported when the first chunk runs.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from studio_nova.config import Settings
from studio_nova.errors import ConfigError, PluginError, PropagationError
from studio_nova.media.frames import from_float, to_float
from studio_nova.plugin_api.propagation import (
    ChunkInput,
    ChunkOutput,
    check_chunk,
    keep_unchanged,
)

log = logging.getLogger(__name__)

_MULTIPLE = 16  # VAE 8x spatial compression times the transformer's 2x2 patch


def model_size(height: int, width: int, sample_size: tuple[int, int]) -> tuple[int, int]:
    """The model's working size for a source: the adapter's trained area, the source's aspect
    ratio, both sides multiples of 16."""
    area = float(sample_size[0] * sample_size[1])
    aspect = width / height
    w = max(_MULTIPLE, round(math.sqrt(area * aspect) / _MULTIPLE) * _MULTIPLE)
    h = max(_MULTIPLE, round(math.sqrt(area / aspect) / _MULTIPLE) * _MULTIPLE)
    return int(h), int(w)


def _default(setting: str) -> Any:
    """A setting's declared default (not the environment's value): for options not given."""
    return Settings.model_fields[setting].get_default(call_default_factory=True)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    shrink = height < image.shape[0] or width < image.shape[1]
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out.reshape(height, width, *image.shape[2:])


class NovaPropagator:
    """NOVA propagation of keyframe edits (GPU; CPU works at toy size).

    Options (the propagator's settings, `STUDIO_NOVA_` + the name in brackets): `base`
    (nova_base), `adapter` (nova_adapter), `steps` (nova_steps), `text_scale` (nova_text_scale),
    `keyframe_scale` (nova_keyframe_scale), `device` (device), `offload` (model_offload),
    `window` (nova_window: cross-attention reach in latent frames, -1 = whole chunk), `seed`
    (nova_seed); and `recompute_dense`, `mask_low`, `mask_high`, `prompt` (used when the chunk
    carries no instruction). The registry builds it with `from_settings(settings, **options)`:
    options not given come from the run's settings. Made directly, options not given take the
    settings' defaults; the environment is never read here.
    """

    name = "nova"
    supports_guide = True  # background replacement: the composite drives the sparse branch

    @classmethod
    def settings_options(cls, settings: Settings) -> dict[str, Any]:
        """The options the run's settings decide (a render's identity records them)."""
        return {
            "base": settings.nova_base,
            "adapter": settings.nova_adapter,
            "steps": settings.nova_steps,
            "text_scale": settings.nova_text_scale,
            "keyframe_scale": settings.nova_keyframe_scale,
            "device": settings.device,
            "offload": settings.model_offload,
            "window": settings.nova_window,
            "seed": settings.nova_seed,
        }

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> NovaPropagator:
        """The propagator for a run: `settings_options(settings)`, overridden by `options`."""
        return cls(**{**cls.settings_options(settings), **options})

    def __init__(
        self,
        base: str | None = None,
        adapter: str | None = None,
        steps: int | None = None,
        text_scale: float | None = None,
        keyframe_scale: float | None = None,
        device: str | None = None,
        offload: bool | None = None,
        window: int | None = None,
        recompute_dense: bool = False,
        seed: int | None = None,
        mask_low: float = 0.02,
        mask_high: float = 0.08,
        prompt: str = "",
    ) -> None:
        self.base = Path(base or "")
        self.adapter = Path(adapter or "")
        self.steps = int(steps if steps is not None else _default("nova_steps"))
        self.text_scale = float(text_scale if text_scale is not None else _default("nova_text_scale"))
        self.keyframe_scale = float(keyframe_scale if keyframe_scale is not None else _default("nova_keyframe_scale"))
        self.device = device or _default("device")
        self.offload = bool(offload if offload is not None else _default("model_offload"))
        self.window = window
        self.recompute_dense = bool(recompute_dense)
        self.seed = int(seed if seed is not None else _default("nova_seed"))
        self.mask_low, self.mask_high = float(mask_low), float(mask_high)
        self.prompt = prompt
        self._check_settings(base, adapter)
        self._pipe: Any = None

    def _check_settings(self, base: str | None, adapter: str | None) -> None:
        if not base:
            raise ConfigError(
                "the nova propagator needs its base model: set STUDIO_NOVA_NOVA_BASE to the local "
                "Wan2.1-VACE-1.3B-diffusers folder (or `studio-nova model init --tiny DIR` for a toy one)",
                setting="nova_base",
            )
        if not (self.base / "transformer").is_dir() or not (self.base / "vae").is_dir():
            raise ConfigError(
                "STUDIO_NOVA_NOVA_BASE must point at a Wan2.1-VACE-1.3B-diffusers folder "
                "(with transformer/, vae/, text_encoder/, tokenizer/)",
                path=self.base, setting="nova_base",
            )
        if not adapter:
            raise ConfigError(
                "the nova propagator needs its adapter: set STUDIO_NOVA_NOVA_ADAPTER to the local NOVA "
                "adapter .safetensors file (or the folder holding nova_adapter.safetensors)",
                setting="nova_adapter",
            )
        if not (self.adapter.is_file() or (self.adapter / "nova_adapter.safetensors").is_file()):
            raise ConfigError(
                "STUDIO_NOVA_NOVA_ADAPTER must point at a NOVA adapter .safetensors file "
                "(or a folder holding nova_adapter.safetensors)",
                path=self.adapter, setting="nova_adapter",
            )
        if self.steps < 1:
            raise ConfigError(f"nova_steps must be at least 1, got {self.steps}", setting="nova_steps")
        if self.mask_high <= self.mask_low:
            raise ConfigError(f"mask_high ({self.mask_high}) must exceed mask_low ({self.mask_low})")

    # ---------------------------------------------------------------------------- loading

    def _pipeline(self) -> Any:
        if self._pipe is None:
            self._pipe = _load_pipeline(str(self.base), str(self.adapter), self.device, self.offload, self.window)
        return self._pipe

    # ---------------------------------------------------------------------------- propagate

    def propagate(self, chunk: ChunkInput) -> ChunkOutput:
        import torch

        # 1. Check inputs
        check_chunk(chunk)
        pipe = self._pipeline()
        frames = chunk.frames
        n, height, width = frames.shape[:3]
        mh, mw = model_size(height, width, tuple(pipe.transformer.config.sample_size))

        # 2. To the model: resize, pad to 4k+1 frames (repeat the last frame), known frames
        padded = n + (-(n - 1)) % 4
        small = np.stack([_resize(to_float(f), mh, mw) for f in frames])
        if padded > n:
            small = np.concatenate([small, np.repeat(small[-1:], padded - n, axis=0)])
        keyframes = {k: _resize(np.asarray(kf.image, np.float32), mh, mw) for k, kf in chunk.keyframes.items()}
        anchors = {k: _resize(to_float(a), mh, mw) for k, a in chunk.anchors.items()}
        control = None
        if chunk.guide is not None:
            control = np.stack([_resize(g, mh, mw) for g in chunk.guide.frames])
            if padded > n:
                control = np.concatenate([control, np.repeat(control[-1:], padded - n, axis=0)])
        instruction = getattr(chunk, "instruction", "") or self.prompt
        text_scale = self.text_scale if instruction else 1.0  # "" vs "" guides nowhere: skip that pass

        # 3. Run the model on the chunk
        generator = torch.Generator("cpu").manual_seed(self.seed)
        try:
            result = pipe(
                small, keyframes, anchors, prompt=instruction, num_inference_steps=self.steps,
                text_guidance_scale=text_scale, keyframe_guidance_scale=self.keyframe_scale,
                generator=generator, recompute_dense=self.recompute_dense, return_source_reconstruction=True,
                control=control,
            )
        except ValueError as exc:
            raise PropagationError(f"nova could not run the chunk: {exc}", shot=chunk.shot,
                                   frame=chunk.first_frame) from exc
        if chunk.guide is not None:
            return self._guided(chunk, result.frames[:n], control[:n])
        edit = (result.frames - result.source_reconstruction)[:n]

        # 4. Back to full resolution: keyframes and anchors as given, the rest source + masked edit
        out = np.empty_like(frames)
        masks = np.zeros((n, height, width), np.uint8)
        for t in range(n):
            if t in chunk.anchors:
                out[t], masks[t] = _anchor(chunk.anchors[t], frames[t])
                continue
            source = to_float(frames[t])
            if t in chunk.keyframes:
                kf = chunk.keyframes[t]
                m = np.clip(np.asarray(kf.mask, np.float32), 0.0, 1.0)
                target = np.asarray(kf.image, np.float32)
            else:
                change = np.abs(edit[t]).max(axis=-1)
                change = cv2.GaussianBlur(change, (0, 0), 1.0)
                m_small = np.clip((change - self.mask_low) / (self.mask_high - self.mask_low), 0.0, 1.0)
                m = _resize(m_small, height, width).clip(0.0, 1.0)
                target = source + _resize(edit[t], height, width)
            m8 = np.rint(m * 255.0).astype(np.uint8)
            blended = from_float((1.0 - m[..., None]) * source + m[..., None] * target, frames.dtype)
            out[t] = np.where((m8 == 0)[..., None], frames[t], blended)
            masks[t] = m8
        return ChunkOutput(frames=out, masks=masks)

    def _guided(self, chunk: ChunkInput, model_out: np.ndarray, control: np.ndarray) -> ChunkOutput:
        """A background replacement at full resolution: the composite guide plus, behind the
        subject only, what the model changed of it (its harmonisation of the new background),
        carried up as a difference so the plate's full-resolution detail stays. Every foreground
        pixel is the source's (the guide's), and anchors come back as they are."""
        guide = chunk.guide
        assert guide is not None
        frames = chunk.frames
        n, height, width = frames.shape[:3]
        out = np.empty_like(frames)
        masks = np.zeros((n, height, width), np.uint8)
        for t in range(n):
            if t in chunk.anchors:
                out[t], masks[t] = _anchor(chunk.anchors[t], frames[t])
                continue
            if t in chunk.keyframes:  # the approved composite, as the reviewer saw it
                fused = np.asarray(chunk.keyframes[t].image, np.float32)
            else:
                behind = (1.0 - guide.alpha[t])[..., None]
                change = _resize(model_out[t] - control[t], height, width)
                fused = np.clip(guide.frames[t] + behind * change, 0.0, 1.0)
            out[t], masks[t] = keep_unchanged(frames[t], from_float(fused, frames.dtype), guide.changed[t])
        return ChunkOutput(frames=out, masks=masks)


def _anchor(anchor: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An anchor comes back as it is (the previous chunk committed it), marked where it differs."""
    return anchor, np.where(np.any(anchor != source, axis=-1), 255, 0).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _load_pipeline(base: str, adapter: str, device: str, offload: bool, window: int | None) -> Any:
    """Load (once per process for the same weights and device) the NOVA pipeline.

    A render makes one propagator per shot; the umT5-XXL text encoder and the 2B-parameter
    transformer take far longer to load than a chunk takes to run, so shots share one copy.
    """
    try:
        import torch

        from studio_nova.pipelines.nova_pipeline import NovaPipeline
    except ImportError as exc:
        raise PluginError(
            f"the nova propagator needs torch, diffusers and transformers ({exc}); "
            'install them with pip install -e ".[model]" (see README)'
        ) from exc
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    options = {} if window is None else {"window": int(window)}
    try:
        pipe = NovaPipeline.from_local(base, adapter, device="cpu" if offload else device, **options)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise ConfigError(f"cannot load the NOVA model: {exc}", path=base) from exc
    if offload and device != "cpu":
        try:
            pipe.enable_model_cpu_offload(device=device)
        except ImportError as exc:  # diffusers' offload hooks live in `accelerate`
            raise ConfigError(
                f"STUDIO_NOVA_MODEL_OFFLOAD needs the `accelerate` package ({exc}); install it or "
                "turn offload off", setting="model_offload",
            ) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe
