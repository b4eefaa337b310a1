"""NOVA: Wan 2.1 VACE (main + sparse branch) plus a frozen dense branch read through cross-attention.

DESIGN section 8. The main denoising branch and the VACE blocks (the sparse branch, which reads
the keyframes) are diffusers' `WanVACETransformer3DModel`, unchanged. The dense branch reads the
clean *source* latents; at every main block a trainable cross-attention lets the main hidden
states (query) fetch from that layer's dense features (key/value):

    z_m <- block_l(z_m);  z_m <- z_m + S_l(z_m, r) + D_l(z_m, z_d^l)

The dense branch is a replica of the patch embedding and the DiT blocks, initialised from the
base weights and frozen. Because both copies are frozen and start equal, they stay equal for
ever, so the replica *shares* the base tensors instead of holding a second 1.3B-parameter copy
(same numbers, half the memory).

The dense branch runs on clean latents at a fixed timestep and text context, so its features do
not depend on the denoising step: `encode_dense` computes every layer's key/value once per
chunk and every step and both guidance passes reuse them (`NovaDenseCache`). Passing
`source_latents` instead recomputes them on each call, which gives the same numbers and exists
for comparison.

Only the cross-attentions (`nova_blocks`) are trainable, and `save_pretrained` writes only them,
as safetensors; the base always comes from its own folder. For training
(`studio_nova.training`), `enable_gradient_checkpointing()` recomputes every main block with its
hint and cross-attention in the backward instead of keeping its activations.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_wan_vace import WanVACETransformer3DModel

ADAPTER_FILE = "nova_adapter.safetensors"
ADAPTER_PREFIX = "nova_blocks."
_ADAPTER_OPTIONS = ("window", "dense_timestep", "sample_size")


def apply_rope(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of `x` (B, L, H, D) by Wan's 3D RoPE (1, L, 1, D).

    Computed in float32 whatever the model dtype: bf16 angles lose the position of far tokens.
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    x1, x2 = pairs[..., 0], pairs[..., 1]
    cos = freqs_cos[..., 0::2].float()
    sin = freqs_sin[..., 1::2].float()
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.type_as(x)


def windowed_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, frames: int, window: int
) -> torch.Tensor:
    """Attention where the tokens of latent frame f see only key frames f-window..f+window.

    Query (P, H, frames*Sq, D); key/value (P or 1, H, frames*Sk, D). A key/value of batch 1
    serves all P queries (the guidance passes) without being copied: the passes are folded into
    the query sequence, which attention allows since queries do not see each other.

    Interior frames all have a full window of 2w+1 frames, so they run as one batched SDPA call
    over gathered key windows; the 2w edge frames, whose windows are cut by the chunk's ends,
    run one by one. The cost is that of attending over 2w+1 frames, not over the whole chunk.
    """
    passes = query.shape[0]
    if key.shape[0] == 1 and passes > 1:
        b, h, length, d = query.shape
        folded = query.unflatten(2, (frames, length // frames)).permute(1, 2, 0, 3, 4).reshape(1, h, -1, d)
        out = windowed_attention(folded, key, value, frames, window)
        return out.reshape(h, frames, b, length // frames, d).permute(2, 0, 1, 3, 4).reshape(b, h, length, d)
    if key.shape[0] != passes:
        raise ValueError(f"key batch {key.shape[0]} fits neither 1 nor the query batch {passes}")
    if window < 0 or 2 * window + 1 >= frames:
        return F.scaled_dot_product_attention(query, key, value)
    b, h, length, d = query.shape
    sq, sk = length // frames, key.shape[2] // frames
    q = query.unflatten(2, (frames, sq))
    k = key.unflatten(2, (frames, sk))
    v = value.unflatten(2, (frames, sk))
    out = torch.empty_like(q)
    span = 2 * window + 1
    inner = frames - 2 * window
    index = torch.arange(inner, device=query.device)[:, None] + torch.arange(span, device=query.device)[None, :]
    # (B, H, inner, span, Sk, D) -> (B*inner, H, span*Sk, D)
    k_win = k[:, :, index].permute(0, 2, 1, 3, 4, 5).reshape(b * inner, h, span * sk, d)
    v_win = v[:, :, index].permute(0, 2, 1, 3, 4, 5).reshape(b * inner, h, span * sk, d)
    q_in = q[:, :, window : frames - window].permute(0, 2, 1, 3, 4).reshape(b * inner, h, sq, d)
    o_in = F.scaled_dot_product_attention(q_in, k_win, v_win)
    out[:, :, window : frames - window] = o_in.reshape(b, inner, h, sq, d).permute(0, 2, 1, 3, 4)
    for f in [*range(window), *range(frames - window, frames)]:
        lo, hi = max(0, f - window), min(frames, f + window + 1)
        out[:, :, f] = F.scaled_dot_product_attention(
            q[:, :, f], k[:, :, lo:hi].flatten(2, 3), v[:, :, lo:hi].flatten(2, 3)
        )
    return out.flatten(2, 3)


class NovaCrossAttention(nn.Module):
    """One layer's adapter: main hidden states (query) attend to that layer's dense features.

    RMS-normed inputs, q/k RMS norm across heads (as Wan's own attention), 3D RoPE on query and
    key (both streams lie on the same latent grid, so RoPE makes "same place, same time" cheap
    to find), and an output projection initialised to zero so that an untrained adapter adds
    exactly nothing.
    """

    def __init__(self, dim: int, heads: int, eps: float = 1e-6) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm_hidden = nn.RMSNorm(dim, eps=eps)
        self.norm_dense = nn.RMSNorm(dim, eps=eps)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def project_kv(
        self, dense: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and value (B, H, L, D) of dense features (B, L, dim): what the cache holds."""
        x = self.norm_dense(dense)
        key = self.norm_k(self.to_k(x)).unflatten(2, (self.heads, -1))
        value = self.to_v(x).unflatten(2, (self.heads, -1))
        key = apply_rope(key, *rotary_emb)
        return key.transpose(1, 2), value.transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor],
        frames: int,
        window: int = -1,
    ) -> torch.Tensor:
        query = self.norm_q(self.to_q(self.norm_hidden(hidden_states))).unflatten(2, (self.heads, -1))
        query = apply_rope(query, *rotary_emb).transpose(1, 2)
        out = windowed_attention(query, key.to(query.dtype), value.to(query.dtype), frames, window)
        return self.to_out(out.transpose(1, 2).flatten(2))


@dataclass
class NovaDenseCache:
    """Per-layer key/value of the dense branch for one chunk (batch 1 or the pass batch)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    grid: tuple[int, int, int]  # latent frames, patch rows, patch columns

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class NovaTransformer3DModel(ModelMixin, ConfigMixin):
    """`WanVACETransformer3DModel` + frozen dense branch + trainable per-block cross-attention.

    Config: `base_config` (the wrapped VACE transformer's config), `window` (-1: every key frame
    of the chunk; w >= 0: latent frames f-w..f+w), `dense_timestep` (the fixed timestep of the
    dense branch; 0 = clean), `sample_size` ([height, width] in pixels the adapter was trained
    at; the propagator resizes to this area).

    Build it with `from_base` (a base folder or model, optionally an adapter file).
    """

    ignore_for_config = ["vace"]
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        base_config: dict[str, Any] | None = None,
        window: int = -1,
        dense_timestep: float = 0.0,
        sample_size: Sequence[int] = (480, 832),
        vace: WanVACETransformer3DModel | None = None,
    ) -> None:
        super().__init__()
        if window < -1:
            raise ValueError(f"window must be -1 (whole chunk) or >= 0 latent frames, got {window}")
        if len(sample_size) != 2 or min(sample_size) < 16:
            raise ValueError(f"sample_size must be [height, width] of at least 16 px, got {sample_size}")
        if vace is None:
            if base_config is None:
                raise ValueError("base_config is required when no `vace` model is given")
            vace = WanVACETransformer3DModel.from_config(base_config)
        self.vace = vace
        self.vace.requires_grad_(False)
        self.gradient_checkpointing = False  # `enable_gradient_checkpointing()` turns it on (training)
        cfg = vace.config
        dim = cfg.num_attention_heads * cfg.attention_head_dim
        param = next(vace.parameters())
        self.nova_blocks = nn.ModuleList(
            [NovaCrossAttention(dim, cfg.num_attention_heads, cfg.eps) for _ in range(cfg.num_layers)]
        ).to(device=param.device, dtype=param.dtype)

    # ------------------------------------------------------------------------------ building

    @classmethod
    def from_base(
        cls,
        base: str | Path | WanVACETransformer3DModel,
        *,
        adapter: str | Path | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        **options: Any,
    ) -> "NovaTransformer3DModel":
        """The base VACE transformer (a diffusers folder, its `transformer/` subfolder, or a
        model) plus the adapter from `adapter` (a .safetensors file or a folder holding
        `nova_adapter.safetensors`), or a zero-initialised adapter when None.

        Options (`window`, `dense_timestep`, `sample_size`) default to what the adapter file
        records, then to the class defaults.
        """
        unknown = sorted(set(options) - set(_ADAPTER_OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; known: {list(_ADAPTER_OPTIONS)}")
        if isinstance(base, WanVACETransformer3DModel):
            vace = cast_keeping_fp32(base.to(device), torch_dtype)
        else:
            vace = load_vace_transformer(Path(base), torch_dtype, device)
        adapter_path = None
        if adapter is not None:
            adapter_path = resolve_adapter_path(Path(adapter))
            options = {**read_adapter_options(adapter_path), **options}
        base_config = {k: v for k, v in dict(vace.config).items() if not k.startswith("_")}
        model = cls(base_config=base_config, vace=vace, **options)
        model.nova_blocks.to(device=device, dtype=torch_dtype)
        if adapter_path is not None:
            model.load_adapter(adapter_path)
        return model

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, pretrained_model_name_or_path: str | Path, *, base: str | Path | WanVACETransformer3DModel, **kwargs: Any
    ) -> "NovaTransformer3DModel":
        """Mirror of `save_pretrained`: the folder holds the adapter only, so the base is named."""
        return cls.from_base(base, adapter=Path(pretrained_model_name_or_path), **kwargs)

    def set_window(self, window: int) -> None:
        """Change the cross-attention's reach (the weights do not depend on it)."""
        if window < -1:
            raise ValueError(f"window must be -1 (whole chunk) or >= 0 latent frames, got {window}")
        self.register_to_config(window=int(window))

    # --------------------------------------------------------------------------- adapter I/O

    def adapter_parameters(self) -> list[nn.Parameter]:
        return list(self.nova_blocks.parameters())

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        return {ADAPTER_PREFIX + k: v for k, v in self.nova_blocks.state_dict().items()}

    def adapter_options(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in
                ((k, self.config[k]) for k in _ADAPTER_OPTIONS)}

    def save_pretrained(self, save_directory: str | Path, **_: Any) -> Path:  # type: ignore[override]
        """Write config.json and the adapter (safetensors) only: the base has its own folder."""
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_config(folder)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.adapter_state_dict().items()}
        path = folder / ADAPTER_FILE
        save_file(tensors, str(path), metadata={"format": "pt", "nova": json.dumps(self.adapter_options())})
        return path

    def load_adapter(self, path: str | Path) -> None:
        """Load adapter weights, refusing files whose names or shapes do not fit this base."""
        from safetensors.torch import load_file

        path = resolve_adapter_path(Path(path))
        tensors = load_file(str(path))
        expected = self.adapter_state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"adapter {path} does not fit this base: missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
                f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"
            )
        for name, tensor in tensors.items():
            if tensor.shape != expected[name].shape:
                raise ValueError(
                    f"adapter {path}: {name} is {tuple(tensor.shape)}, this base needs "
                    f"{tuple(expected[name].shape)}"
                )
        state = {k[len(ADAPTER_PREFIX):]: v for k, v in tensors.items()}
        self.nova_blocks.load_state_dict(state, strict=True)

    # ------------------------------------------------------------------------------- forward

    @property
    def dense_blocks(self) -> nn.ModuleList:
        """The dense branch's DiT blocks: the frozen base blocks themselves (see module doc)."""
        return self.vace.blocks

    def _dense_features(
        self, source_latents: torch.Tensor, encoder_hidden_states: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor], tuple[int, int, int]]:
        """Every layer's dense-branch features of clean source latents (B, C, T, H, W), the
        RoPE of their grid, and the grid. The branch is frozen and runs without autograd."""
        vace = self.vace
        cfg = vace.config
        p_t, p_h, p_w = cfg.patch_size
        _, _, t, h, w = source_latents.shape
        grid = (t // p_t, h // p_h, w // p_w)
        rotary_emb = vace.rope(source_latents)
        batch = source_latents.shape[0]
        with torch.no_grad():
            x = vace.patch_embedding(source_latents).flatten(2).transpose(1, 2)
            if encoder_hidden_states is None:
                encoder_hidden_states = x.new_zeros(batch, 1, cfg.text_dim)
            timestep = torch.full((batch,), float(self.config.dense_timestep), device=x.device)
            _, timestep_proj, context, _ = vace.condition_embedder(timestep, encoder_hidden_states.to(x.dtype), None)
            timestep_proj = timestep_proj.unflatten(1, (6, -1))
            features = []
            for block in vace.blocks:
                x = block(x, context, timestep_proj, rotary_emb)
                features.append(x)
        return features, rotary_emb, grid

    def encode_dense(
        self, source_latents: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None
    ) -> NovaDenseCache:
        """Run the dense branch on clean source latents (B, C, T, H, W) and project every
        layer's features to the adapter's key/value.

        The branch itself is frozen and runs without autograd; the key/value projections are
        adapter weights and keep their graph when gradients are on (training).
        """
        features, rotary_emb, grid = self._dense_features(source_latents, encoder_hidden_states)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for block, feature in zip(self.nova_blocks, features):
            k, v = block.project_kv(feature, rotary_emb)
            keys.append(k)
            values.append(v)
        return NovaDenseCache(keys, values, grid)

    def _main_layer(
        self,
        index: int,
        frames: int,
        window: int,
        x: torch.Tensor,
        context: torch.Tensor,
        timestep_proj: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor],
        hint: torch.Tensor | None,
        hint_scale: torch.Tensor | None,
        key: torch.Tensor | None,
        value: torch.Tensor | None,
        feature: torch.Tensor | None,
    ) -> torch.Tensor:
        """Main block `index`, then its sparse hint and its dense cross-attention: the unit that
        gradient checkpointing recomputes. Dense input is either the cached key/value or the
        layer's dense feature (projected here, so a checkpoint keeps no key/value alive)."""
        x = self.vace.blocks[index](x, context, timestep_proj, rotary_emb)
        if feature is not None:
            key, value = self.nova_blocks[index].project_kv(feature, rotary_emb)
        dense = None
        if key is not None and value is not None:
            dense = self.nova_blocks[index](x, key, value, rotary_emb, frames, window)
        if hint is not None:
            x = x + hint * hint_scale
        if dense is not None:
            x = x + dense
        return x

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        control_hidden_states: torch.Tensor,
        control_hidden_states_scale: torch.Tensor | None = None,
        source_latents: torch.Tensor | None = None,
        dense_cache: NovaDenseCache | None = None,
        dense_encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """VACE's forward with the dense cross-attention added after every block.

        Give either `dense_cache` (from `encode_dense`, reused across steps) or `source_latents`
        (recomputed here). With neither, the output is the plain VACE output.

        With gradient checkpointing on (`enable_gradient_checkpointing()`) and autograd
        recording, every main block with its hint and cross-attention, and every VACE block,
        is recomputed in the backward instead of keeping its activations; with
        `source_latents`, the dense branch then keeps only its per-layer features (no autograd)
        and each layer projects its key/value inside its checkpoint. Same numbers either way.
        """
        if dense_cache is not None and source_latents is not None:
            raise ValueError("pass either dense_cache or source_latents, not both")
        vace = self.vace
        cfg = vace.config
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = cfg.patch_size
        grid = (frames // p_t, height // p_h, width // p_w)
        checkpointing = self.gradient_checkpointing and torch.is_grad_enabled()
        features: list[torch.Tensor] | None = None
        if source_latents is not None:
            if source_latents.shape[2:] != hidden_states.shape[2:]:
                raise ValueError(
                    f"source_latents {tuple(source_latents.shape)} must lie on the grid of "
                    f"hidden_states {tuple(hidden_states.shape)}"
                )
            if checkpointing:
                features = self._dense_features(source_latents, dense_encoder_hidden_states)[0]
            else:
                dense_cache = self.encode_dense(source_latents, dense_encoder_hidden_states)
        if dense_cache is not None and tuple(dense_cache.grid) != grid:
            raise ValueError(f"dense_cache is for latent grid {dense_cache.grid}, hidden_states are {grid}")

        n_vace = len(cfg.vace_layers)
        if control_hidden_states_scale is None:
            control_hidden_states_scale = control_hidden_states.new_ones(n_vace)
        scales = torch.unbind(control_hidden_states_scale)
        if len(scales) != n_vace:
            raise ValueError(f"control_hidden_states_scale has {len(scales)} entries, the model {n_vace} VACE layers")

        # 1. Rotary position embedding and patch embeddings (as in WanVACETransformer3DModel)
        rotary_emb = vace.rope(hidden_states)
        x = vace.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
        control = vace.vace_patch_embedding(control_hidden_states).flatten(2).transpose(1, 2)
        padding = control.new_zeros(batch, x.size(1) - control.size(1), control.size(2))
        control = torch.cat([control, padding], dim=1)

        # 2. Time and text embedding
        temb, timestep_proj, context, _ = vace.condition_embedder(timestep, encoder_hidden_states, None)
        timestep_proj = timestep_proj.unflatten(1, (6, -1))

        # 3. Sparse branch: VACE hints
        hints = []
        for i, block in enumerate(vace.vace_blocks):
            if checkpointing:
                hint, control = self._gradient_checkpointing_func(block, x, context, control, timestep_proj, rotary_emb)
            else:
                hint, control = block(x, context, control, timestep_proj, rotary_emb)
            hints.append((hint, scales[i]))
        hints.reverse()

        # 4. Main blocks, each followed by the sparse hint and the dense cross-attention
        window = int(self.config.window)
        for i in range(len(vace.blocks)):
            hint, hint_scale = hints.pop() if i in cfg.vace_layers else (None, None)
            key = value = feature = None
            if dense_cache is not None:
                key, value = dense_cache.keys[i], dense_cache.values[i]
            elif features is not None:
                feature = features[i]
            layer = functools.partial(self._main_layer, i, grid[0], window)
            args = (x, context, timestep_proj, rotary_emb, hint, hint_scale, key, value, feature)
            x = self._gradient_checkpointing_func(layer, *args) if checkpointing else layer(*args)

        # 5. Output norm, projection and unpatchify
        shift, scale = (vace.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (vace.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = vace.proj_out(x)
        x = x.reshape(batch, *grid, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)


# ------------------------------------------------------------------------------------ loading


def load_vace_transformer(
    path: Path, torch_dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> WanVACETransformer3DModel:
    """The base VACE transformer from a local diffusers folder (never the hub), as safetensors.

    Built on the meta device and filled with `assign=True`, so a 1.3B model costs one copy of
    its weights (read straight onto `device`), not a random init plus a copy. This also keeps
    loading free of `accelerate`, which diffusers' own `from_pretrained` needs for this class.
    Modules the class keeps in float32 (RoPE, time embedding, modulation tables, norms) stay
    float32 whatever `torch_dtype` is, as `from_pretrained` does.
    """
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
    from safetensors.torch import load_file

    if (path / "transformer" / "config.json").is_file():
        folder = path / "transformer"
    elif (path / "config.json").is_file():
        folder = path
    else:
        raise FileNotFoundError(
            f"{path} is not a diffusers VACE folder: no transformer/config.json (nor config.json) in it"
        )
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = [folder / "diffusion_pytorch_model.safetensors"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"weights missing in {folder}: {missing} (only .safetensors are read)")
    config = WanVACETransformer3DModel.load_config(folder)
    with torch.device("meta"):
        model = WanVACETransformer3DModel.from_config(config)
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f), device=str(device)))
    for key in [k for k in state if any(p in k for p in model._keys_to_ignore_on_load_unexpected or [])]:
        del state[key]
    model.load_state_dict(state, strict=True, assign=True)
    cfg = model.config
    with torch.device(device):  # RoPE tables are buffers that are not saved: rebuild them for real
        model.rope = WanRotaryPosEmbed(cfg.attention_head_dim, cfg.patch_size, cfg.rope_max_seq_len)
    cast_keeping_fp32(model, torch_dtype)
    return model.eval()


def cast_keeping_fp32(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """`model.to(dtype)` except the modules its class keeps in float32 (as from_pretrained)."""
    if dtype is None:
        return model
    nn.Module.to(model, dtype)  # ModelMixin.to warns about exactly what is handled below
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, module in model.named_modules():
        if any(part in keep for part in name.split(".")):
            module.float()
    return model


def resolve_adapter_path(path: Path) -> Path:
    if path.is_dir():
        path = path / ADAPTER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no NOVA adapter at {path} (a .safetensors file, or a folder holding {ADAPTER_FILE})")
    return path


def read_adapter_options(path: Path) -> dict[str, Any]:
    """The options an adapter was saved with (safetensors metadata), if it records them."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "nova" not in meta:
        return {}
    options = json.loads(meta["nova"])
    return {k: v for k, v in options.items() if k in _ADAPTER_OPTIONS}


def tokens_per_chunk(frames: int, height: int, width: int, patch: Sequence[int] = (1, 2, 2)) -> int:
    """Transformer tokens of a pixel chunk (Wan VAE: 4x time, 8x space; then the patch)."""
    latent_t = (frames - 1) // 4 + 1
    return math.prod((latent_t // patch[0], height // 8 // patch[1], width // 8 // patch[2]))
