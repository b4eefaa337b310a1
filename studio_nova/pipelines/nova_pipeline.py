"""`NovaPipeline`: one chunk of source video + edited keyframes (+ anchors) -> edited chunk.

Diffusers conventions (numbered steps in `__call__`, `check_inputs` raising ValueError that names
the argument, flow-matching scheduler), with NOVA's three inputs (DESIGN sections 1 and 8):

- the *sparse* condition (VACE): known frames (keyframes and anchors) are kept as they are,
  the frames between them carry the linearly interpolated keyframes as "what to change";
- the *dense* condition: the clean source latents, run once per chunk through the dense branch
  (its key/value reused by every step and every guidance pass);
- the text: umT5 embeddings, computed once per instruction and cached on the pipeline.

Guidance has separate scales for the text and the keyframe condition:
`pred = n(∅t, ∅k) + s_k·(n(∅t, k) − n(∅t, ∅k)) + s_t·(n(t, k) − n(∅t, k))`. With `s_k = 1` the
keyframe-free pass is skipped (plain text CFG); with both 1 a step is one pass. The passes run as
one batch. Latent frames whose pixels are all known are pinned to their known latents along the
flow-matching path, so known frames come back as their VAE round trip.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from studio_nova.models.nova_transformer import NovaTransformer3DModel

log = logging.getLogger(__name__)

_PROMPT_CACHE_SIZE = 16
# Peak bytes per decoded pixel of the Wan VAE decoder for one latent frame (4 output frames at
# up to 384 channels, float32, a few live activations): an upper bound used to decide tiling.
_DECODE_BYTES_PER_PIXEL = 4 * 384 * 4 * 6


@dataclass
class NovaPipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor  # (F, H, W, 3) in [0, 1] ("np"/"pt") or latents ("latent")
    # The source through the VAE (encode + decode), when asked for: what the output would be
    # with no edit at all, so `frames - source_reconstruction` is the edit without VAE loss.
    source_reconstruction: np.ndarray | torch.Tensor | None = None


def interpolate_known(
    known: Mapping[int, np.ndarray], num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """The sparse guide: known frames as they are, frames between two known frames a linear blend
    of them, frames outside the first/last known frame a copy of the nearest one.

    Returns the guide (F, H, W, 3) float32 and a per-frame flag of which frames are known.
    """
    index = sorted(known)
    first = np.asarray(known[index[0]], np.float32)
    guide = np.empty((num_frames, *first.shape), np.float32)
    is_known = np.zeros(num_frames, bool)
    for t in range(num_frames):
        if t in known:
            guide[t] = known[t]
            is_known[t] = True
            continue
        left = max((k for k in index if k < t), default=None)
        right = min((k for k in index if k > t), default=None)
        if left is None or right is None:
            guide[t] = known[left if right is None else right]
        else:
            a = (t - left) / (right - left)
            guide[t] = (1.0 - a) * np.asarray(known[left], np.float32) + a * np.asarray(known[right], np.float32)
    return guide, is_known


class NovaPipeline(DiffusionPipeline):
    """NOVA keyframe-guided video editing of one chunk. Build with `from_local`."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        vae: AutoencoderKLWan,
        scheduler: FlowMatchEulerDiscreteScheduler,
        transformer: NovaTransformer3DModel,
    ) -> None:
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer
        )
        self.vae_scale_factor_temporal = 2 ** sum(vae.config.temperal_downsample)
        self.vae_scale_factor_spatial = 2 ** len(vae.config.temperal_downsample)
        self._prompt_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    # --------------------------------------------------------------------------------- loading

    @classmethod
    def from_local(
        cls,
        base: str | Path,
        adapter: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        torch_dtype: torch.dtype | None = None,
        **nova_options: Any,
    ) -> "NovaPipeline":
        """Base (Wan2.1-VACE diffusers folder) + NOVA adapter (.safetensors), local files only.

        The transformer and text encoder run in bf16 on a GPU and float32 on the CPU (or
        `torch_dtype`); the VAE always in float32.
        """
        from transformers import AutoTokenizer, UMT5EncoderModel

        base = Path(base)
        device = torch.device(device)
        if torch_dtype is None:
            torch_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        for sub in ("tokenizer", "text_encoder", "vae", "transformer"):
            if not (base / sub).is_dir():
                raise FileNotFoundError(f"{base} is not a Wan VACE diffusers folder: {sub}/ is missing")
        tokenizer = AutoTokenizer.from_pretrained(str(base / "tokenizer"), local_files_only=True)
        text_encoder = UMT5EncoderModel.from_pretrained(
            str(base / "text_encoder"), dtype=torch_dtype, local_files_only=True
        ).to(device)
        vae = AutoencoderKLWan.from_pretrained(  # without `accelerate`, the plain (full-memory) load
            str(base / "vae"), torch_dtype=torch.float32, local_files_only=True,
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        ).to(device)
        transformer = NovaTransformer3DModel.from_base(
            base, adapter=adapter, torch_dtype=torch_dtype, device=device, **nova_options
        )
        pipe = cls(tokenizer, text_encoder, vae, load_flow_scheduler(base / "scheduler"), transformer)
        for module in (text_encoder, vae, transformer):
            module.eval()
        return pipe

    # ------------------------------------------------------------------------------- prompts

    def encode_prompt(self, prompt: str, max_sequence_length: int = 512) -> torch.Tensor:
        """umT5 embeddings of `prompt` (1, L, C), cached: one instruction is encoded once."""
        device = self._execution_device
        dtype = self.transformer.dtype
        key = (prompt, max_sequence_length, str(device), dtype)
        if key in self._prompt_cache:
            self._prompt_cache.move_to_end(key)
            return self._prompt_cache[key]
        inputs = self.tokenizer(
            [prompt.strip()],
            padding="max_length",
            max_length=max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = inputs.input_ids.to(device), inputs.attention_mask.to(device)
        with torch.no_grad():
            embeds = self.text_encoder(ids, mask).last_hidden_state
        # Wan zeroes the padding positions: the model was trained on exactly that.
        embeds = (embeds * mask[..., None].to(embeds.dtype)).to(dtype)
        self._prompt_cache[key] = embeds
        while len(self._prompt_cache) > _PROMPT_CACHE_SIZE:
            self._prompt_cache.popitem(last=False)
        return embeds

    # ------------------------------------------------------------------------------- checks

    def check_inputs(
        self,
        video: Any,
        keyframes: Mapping[int, Any],
        anchors: Mapping[int, Any],
        num_inference_steps: int,
        text_guidance_scale: float,
        keyframe_guidance_scale: float,
        output_type: str,
        latents: torch.Tensor | None,
    ) -> None:
        shape = tuple(getattr(video, "shape", ()))
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"`video` must be (frames, height, width, 3), got shape {shape}")
        frames, height, width = shape[:3]
        if frames % self.vae_scale_factor_temporal != 1:
            raise ValueError(f"`video` must have 4n+1 frames, got {frames}")
        multiple = self.vae_scale_factor_spatial * self.transformer.vace.config.patch_size[1]
        if height % multiple or width % multiple:
            raise ValueError(f"`video` height and width must be multiples of {multiple}, got {height}x{width}")
        if not (np.issubdtype(np.asarray(video[:1]).dtype, np.floating) if isinstance(video, np.ndarray)
                else torch.is_floating_point(video)):
            raise ValueError("`video` must be float RGB in [0, 1]")
        for name, frames_by_index in (("keyframes", keyframes), ("anchors", anchors)):
            for index, image in frames_by_index.items():
                if not isinstance(index, (int, np.integer)) or not 0 <= index < frames:
                    raise ValueError(f"`{name}` index {index!r} is outside the chunk of {frames} frames")
                if tuple(np.shape(image)) != (height, width, 3):
                    raise ValueError(
                        f"`{name}`[{index}] is {tuple(np.shape(image))}, the video frames ({height}, {width}, 3)"
                    )
        if not keyframes and not anchors:
            raise ValueError("`keyframes` and `anchors` are both empty: at least one known frame is needed")
        if int(num_inference_steps) < 1:
            raise ValueError(f"`num_inference_steps` must be at least 1, got {num_inference_steps}")
        for name, value in (("text_guidance_scale", text_guidance_scale),
                            ("keyframe_guidance_scale", keyframe_guidance_scale)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite non-negative number, got {value}")
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'np', 'pt' or 'latent', got {output_type!r}")
        if latents is not None:
            expected = self.latent_shape(frames, height, width)
            if tuple(latents.shape) != expected:
                raise ValueError(f"`latents` must be {expected}, got {tuple(latents.shape)}")

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, ...]:
        return (
            1,
            self.vae.config.z_dim,
            (frames - 1) // self.vae_scale_factor_temporal + 1,
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )

    # ------------------------------------------------------------------------------ helpers

    def _to_pixels(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(F, H, W, 3) in [0, 1] -> (1, 3, F, H, W) in [-1, 1] on the VAE's device/dtype."""
        x = torch.as_tensor(np.asarray(frames, np.float32)) if not torch.is_tensor(frames) else frames.float()
        x = x.to(self._execution_device).permute(3, 0, 1, 2).unsqueeze(0)
        return (x * 2.0 - 1.0).to(self.vae.dtype)

    def _latent_stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean, device=device, dtype=torch.float32).view(1, z, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, device=device, dtype=torch.float32).view(1, z, 1, 1, 1)
        return mean, std

    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised latents (the distribution's mode) of pixels (1, 3, F, H, W) in [-1, 1]."""
        with torch.no_grad():
            latents = self.vae.encode(pixels).latent_dist.mode()
        mean, std = self._latent_stats(latents.device)
        return (latents.float() - mean) / std

    def decode_latents(self, latents: torch.Tensor, tiling: bool | None = None) -> torch.Tensor:
        """(B, C, T, h, w) normalised latents -> (B, F, H, W, 3) float32 in [0, 1].

        `tiling` None decides from free GPU memory; on the CPU it stays off.
        """
        mean, std = self._latent_stats(latents.device)
        latents = (latents.float() * std + mean).to(self.vae.dtype)
        if tiling is None:
            tiling = self._decode_needs_tiling(latents.shape[0], latents.shape[-2], latents.shape[-1])
        was = bool(getattr(self.vae, "use_tiling", False))
        if tiling != was:
            self.vae.enable_tiling() if tiling else self.vae.disable_tiling()
        try:
            with torch.no_grad():
                video = self.vae.decode(latents, return_dict=False)[0]
        finally:
            if tiling != was:
                self.vae.enable_tiling() if was else self.vae.disable_tiling()
        video = (video.float().clamp(-1, 1) + 1.0) / 2.0
        return video.permute(0, 2, 3, 4, 1)

    def _decode_needs_tiling(self, batch: int, h: int, w: int) -> bool:
        device = self._execution_device
        if device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        need = batch * h * w * self.vae_scale_factor_spatial**2 * _DECODE_BYTES_PER_PIXEL
        return need > free

    def prepare_conditions(
        self, video: np.ndarray | torch.Tensor, guide: np.ndarray, is_known: np.ndarray, null_control: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Source latents (dense branch) and VACE conditioning (sparse branch), in one batched
        VAE encode: the VAE's many small causal convolutions cost per call, not per video.

        The conditioning (1, 96, T, h, w) is VACE's: latents of the kept part (known frames),
        of the part to change (the interpolated keyframes), and the mask folded onto the latent
        grid. With `null_control`, a second row holds the "nothing known" conditioning of the
        keyframe-free guidance pass.
        """
        frames, height, width = guide.shape[:3]
        source = self._to_pixels(video)
        pixels = self._to_pixels(guide)
        unknown = torch.as_tensor(~is_known, dtype=pixels.dtype, device=pixels.device).view(1, 1, frames, 1, 1)
        batch = [source, pixels * (1 - unknown), pixels * unknown]
        if null_control:
            batch.append(torch.zeros_like(pixels))
        latents = self.encode_video(torch.cat(batch))
        source_latents, inactive, reactive = latents[:1], latents[1:2], latents[2:3]
        control = torch.cat([inactive, reactive, self._fold_mask(~is_known, height, width)], dim=1)
        if null_control:
            empty = latents[3:4]
            nothing = self._fold_mask(np.ones(frames, bool), height, width)
            control = torch.cat([control, torch.cat([empty, empty, nothing], dim=1)])
        return source_latents, control, inactive

    def _fold_mask(self, per_frame: np.ndarray, height: int, width: int) -> torch.Tensor:
        """A per-frame mask (1 = to generate) folded as VACE expects: 8x8 pixel blocks as 64
        channels, frames resampled (nearest) to the latent frames."""
        s = self.vae_scale_factor_spatial
        frames = len(per_frame)
        mask = torch.as_tensor(per_frame, dtype=torch.float32, device=self._execution_device)
        full = mask.view(frames, 1, 1).expand(frames, height, width)
        folded = full.reshape(frames, height // s, s, width // s, s).permute(2, 4, 0, 1, 3).flatten(0, 1)
        latent_frames = (frames - 1) // self.vae_scale_factor_temporal + 1
        return F.interpolate(folded.unsqueeze(0), size=(latent_frames, height // s, width // s),
                             mode="nearest-exact")

    def known_latent_frames(self, is_known: np.ndarray) -> np.ndarray:
        """Latent frames every pixel frame of which is known (Wan VAE: frame 0, then groups of 4)."""
        r = self.vae_scale_factor_temporal
        latent_frames = (len(is_known) - 1) // r + 1
        out = np.zeros(latent_frames, bool)
        out[0] = is_known[0]
        for j in range(1, latent_frames):
            out[j] = bool(is_known[r * (j - 1) + 1 : r * j + 1].all())
        return out

    # --------------------------------------------------------------------------------- call

    def __call__(
        self,
        video: np.ndarray | torch.Tensor,
        keyframes: Mapping[int, np.ndarray] | None = None,
        anchors: Mapping[int, np.ndarray] | None = None,
        prompt: str = "",
        negative_prompt: str = "",
        num_inference_steps: int = 50,
        text_guidance_scale: float = 5.0,
        keyframe_guidance_scale: float = 1.0,
        conditioning_scale: float = 1.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        recompute_dense: bool = False,
        vae_tiling: bool | None = None,
        max_sequence_length: int = 512,
        output_type: str = "np",
        return_source_reconstruction: bool = False,
        return_dict: bool = True,
        control: np.ndarray | None = None,
    ) -> NovaPipelineOutput | tuple:
        """Edit one chunk.

        `video`: the source frames (F, H, W, 3) float in [0, 1], F = 4n+1, H and W multiples of
        16 (the model's resolution). `keyframes` / `anchors`: edited frames by chunk index, same
        size; anchors (the previous chunk's output) win where both are given, since the seam
        must continue what was already committed. `recompute_dense`: run the dense branch at
        every step instead of once (same result; for comparison). `return_source_reconstruction`:
        also decode the source latents (one more VAE decode, batched with the output's).
        `control`: (F, H, W, 3) what the sparse branch reads for the frames that are not known,
        instead of the interpolated keyframes (a background replacement's per-frame composite:
        the subject of each source frame over the plate's frame for that moment).
        """
        keyframes = dict(keyframes or {})
        anchors = dict(anchors or {})

        # 1. Check inputs
        self.check_inputs(video, keyframes, anchors, num_inference_steps, text_guidance_scale,
                          keyframe_guidance_scale, output_type, latents)

        # 2. Define call parameters
        device = self._execution_device
        dtype = self.transformer.dtype
        frames, height, width = video.shape[:3]
        use_text_cfg = text_guidance_scale != 1.0
        use_keyframe_cfg = keyframe_guidance_scale != 1.0
        n_vace = len(self.transformer.vace.config.vace_layers)
        scale = torch.full((n_vace,), float(conditioning_scale), device=device, dtype=dtype)

        # 3. Encode the instruction (cached) and the fixed context of the dense branch
        prompt_embeds = self.encode_prompt(prompt, max_sequence_length)
        contexts = [prompt_embeds]
        if use_text_cfg or use_keyframe_cfg:
            negative = self.encode_prompt(negative_prompt, max_sequence_length)
            contexts.append(negative)
            if use_keyframe_cfg:
                contexts.append(negative)
        dense_context = self.encode_prompt("", max_sequence_length)

        # 4. Prepare timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        sigmas = [float(s) for s in self.scheduler.sigmas]  # on the CPU: no device syncs in the loop

        # 5. Prepare latents: source (dense), known frames and guide (sparse), noise
        known = {**{int(k): np.asarray(v, np.float32) for k, v in keyframes.items()},
                 **{int(k): np.asarray(v, np.float32) for k, v in anchors.items()}}
        guide, is_known = interpolate_known(known, frames)
        if control is not None:
            if np.shape(control) != guide.shape:
                raise ValueError(f"`control` must be {guide.shape} like the video, got {np.shape(control)}")
            guide = np.where(is_known[:, None, None, None], guide, np.asarray(control, np.float32))
        source_float, control, inactive = self.prepare_conditions(video, guide, is_known, use_keyframe_cfg)
        source_latents = source_float.to(dtype)
        if use_keyframe_cfg:  # rows: (text, keyframes), (no text, keyframes), (no text, none)
            control_batch = torch.cat([control[:1], control[:1], control[1:]])
        else:
            control_batch = control.expand(len(contexts), *control.shape[1:])
        control_batch = control_batch.to(dtype)
        context_batch = torch.cat(contexts).to(dtype)
        passes = control_batch.shape[0]

        # Fully known latent frames are pinned to the latents of the known content alone.
        pinned = torch.as_tensor(self.known_latent_frames(is_known), device=device).view(1, 1, -1, 1, 1)
        known_latents = inactive if bool(pinned.any()) else None
        shape = self.latent_shape(frames, height, width)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        latents = noise.clone() if latents is None else latents.to(device, torch.float32)
        if known_latents is not None:
            latents = torch.where(pinned, (1 - sigmas[0]) * known_latents + sigmas[0] * noise, latents)

        # 6. Dense branch: once per chunk, shared by every step and pass
        dense_cache = None
        if not recompute_dense:
            with torch.no_grad():
                dense_cache = self.transformer.encode_dense(source_latents, dense_context)

        # 7. Denoising loop
        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                model_input = latents.to(dtype).expand(passes, *latents.shape[1:])
                with torch.no_grad():
                    pred = self.transformer(
                        hidden_states=model_input,
                        timestep=t.expand(passes),
                        encoder_hidden_states=context_batch,
                        control_hidden_states=control_batch,
                        control_hidden_states_scale=scale,
                        source_latents=source_latents if recompute_dense else None,
                        dense_cache=dense_cache,
                        dense_encoder_hidden_states=dense_context if recompute_dense else None,
                        return_dict=False,
                    )[0].float()
                if passes == 1:
                    noise_pred = pred
                elif passes == 2:
                    cond, uncond = pred.chunk(2)
                    noise_pred = uncond + text_guidance_scale * (cond - uncond)
                else:
                    cond, no_text, bare = pred.chunk(3)
                    noise_pred = (bare + keyframe_guidance_scale * (no_text - bare)
                                  + text_guidance_scale * (cond - no_text))
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
                if known_latents is not None:
                    s = sigmas[i + 1]
                    latents = torch.where(pinned, (1 - s) * known_latents + s * noise, latents)
                progress.update()

        # 8. Decode
        reconstruction: np.ndarray | torch.Tensor | None = None
        if output_type == "latent":
            result: np.ndarray | torch.Tensor = latents
        else:
            batch = torch.cat([latents, source_float]) if return_source_reconstruction else latents
            decoded = self.decode_latents(batch, tiling=vae_tiling)[:, :frames]
            if output_type == "np":
                decoded = decoded.cpu().numpy()
            result = decoded[0]
            if return_source_reconstruction:
                reconstruction = decoded[1]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (result, reconstruction)
        return NovaPipelineOutput(frames=result, source_reconstruction=reconstruction)


def load_flow_scheduler(folder: Path) -> FlowMatchEulerDiscreteScheduler:
    """A flow-matching Euler scheduler from the base's scheduler folder.

    Wan ships a UniPC scheduler config with `flow_shift`; NOVA pins known latents along the
    flow-matching path between steps, which a multistep solver's history would not expect, so
    the shift is kept and the solver is Euler.
    """
    config_file = folder / "scheduler_config.json"
    if not config_file.is_file():
        return FlowMatchEulerDiscreteScheduler(shift=3.0)
    config = FlowMatchEulerDiscreteScheduler.load_config(str(folder))
    if config.get("_class_name") == "FlowMatchEulerDiscreteScheduler":
        return FlowMatchEulerDiscreteScheduler.from_config(config)
    return FlowMatchEulerDiscreteScheduler(shift=float(config.get("flow_shift", 3.0)))
