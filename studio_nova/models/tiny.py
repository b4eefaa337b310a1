"""Tiny random NOVA checkpoints in the real formats, so tests and the demo run the whole path on CPU.

`init_tiny(dir)` writes what a real installation has, at toy size and with seeded random weights:
a base folder in diffusers layout (model_index.json, transformer/, vae/, text_encoder/ (umT5),
tokenizer/ (built locally with the `tokenizers` library: nothing is downloaded), scheduler/)
and a NOVA adapter (`adapter/nova_adapter.safetensors`). The configs follow diffusers' own Wan VACE tests (2 heads,
a few layers); `FULL_TRANSFORMER` is the real Wan2.1-VACE-1.3B transformer config (for the
benchmark, which builds it with random weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TINY_SAMPLE_SIZE = (32, 32)  # [height, width] the tiny adapter "was trained at"
FULL_SAMPLE_SIZE = (480, 832)
TINY_MAX_SEQUENCE_LENGTH = 512  # umT5 context as in Wan; cheap at d_model 32

TINY_TRANSFORMER: dict[str, Any] = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 3,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 32,
    "vace_layers": [0, 2],
    "vace_in_channels": 96,
}

FULL_TRANSFORMER: dict[str, Any] = {  # Wan2.1-VACE-1.3B-diffusers/transformer/config.json
    "patch_size": [1, 2, 2],
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
    "vace_layers": list(range(0, 30, 2)),
    "vace_in_channels": 96,
}

TINY_VAE: dict[str, Any] = {
    "base_dim": 3,
    "z_dim": 16,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True, True],
}

TINY_TEXT_ENCODER: dict[str, Any] = {
    "d_model": 32,
    "d_kv": 16,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 2,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 32,
    "feed_forward_proj": "gated-gelu",
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}

_SPECIAL = ["<pad>", "</s>", "<unk>"]
_CORPUS = [  # enough text for a small byte-level BPE vocabulary; any text still encodes
    "make the sky blue", "red to teal", "turn the car red", "replace the background with a beach",
    "a person walking in the street", "the camera pans left over the city at night",
    "change the jacket colour to yellow", "add snow on the ground", "remove the sign",
    "golden hour light, warm tones", "a dog runs across the grass",
]


@dataclass(frozen=True)
class TinyCheckpoint:
    base: Path  # diffusers folder (model_index.json, transformer/, vae/, ...)
    adapter: Path  # NOVA adapter .safetensors

    def to_dict(self) -> dict[str, str]:
        return {"base": str(self.base), "adapter": str(self.adapter)}


def build_tokenizer(folder: Path) -> None:
    """A small byte-level BPE tokenizer with umT5's special ids (pad 0, eos 1), saved for
    `AutoTokenizer.from_pretrained(folder)`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=_SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        model_max_length=TINY_MAX_SEQUENCE_LENGTH,
    )
    fast.save_pretrained(str(folder))


def init_tiny(folder: str | Path, *, seed: int = 0, adapter_scale: float = 0.02) -> TinyCheckpoint:
    """Write a tiny random base (`folder/base`) and adapter (`folder/adapter/nova_adapter.safetensors`).

    The adapter's output projections are random (`adapter_scale`), not zero, so the tiny NOVA
    model really differs from its base: a test that passes with a zero adapter proves nothing
    about the dense branch.
    """
    import diffusers
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from studio_nova.models.nova_transformer import NovaTransformer3DModel

    root = Path(folder)
    base = root / "base"
    base.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed)
    transformer = WanVACETransformer3DModel(**TINY_TRANSFORMER)
    transformer.save_pretrained(str(base / "transformer"), safe_serialization=True)
    torch.manual_seed(seed + 1)
    AutoencoderKLWan(**TINY_VAE).save_pretrained(str(base / "vae"), safe_serialization=True)

    build_tokenizer(base / "tokenizer")
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(base / "tokenizer")))
    torch.manual_seed(seed + 2)
    UMT5EncoderModel(UMT5Config(vocab_size=vocab, **TINY_TEXT_ENCODER)).save_pretrained(
        str(base / "text_encoder"), safe_serialization=True
    )
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(str(base / "scheduler"))
    index = {
        "_class_name": "WanVACEPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "transformer": ["diffusers", "WanVACETransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    (base / "model_index.json").write_text(json.dumps(index, indent=2))

    model = NovaTransformer3DModel.from_base(transformer, sample_size=list(TINY_SAMPLE_SIZE))
    generator = torch.Generator().manual_seed(seed + 3)
    with torch.no_grad():
        for block in model.nova_blocks:
            block.to_out.weight.copy_(torch.randn(block.to_out.weight.shape, generator=generator) * adapter_scale)
    adapter_dir = root / "adapter"
    saved = model.save_pretrained(adapter_dir)
    return TinyCheckpoint(base=base, adapter=saved)
