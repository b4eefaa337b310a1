"""Tiny, randomly initialised models for the `generator` background, in diffusers layout, built locally.

- `build_tiny_t2i`: a text-to-image `FluxPipeline` folder, from the same toy components as
  `tiny_models.build_tiny_flux_kontext` (FLUX transformer, VAE, CLIP + T5, tokenizers, scheduler);
- `build_tiny_wan_i2v`: a `WanImageToVideoPipeline` folder (Wan transformer with image
  conditioning, Wan VAE, umT5 text encoder, CLIP vision image encoder + processor, scheduler)
  at the toy sizes diffusers' own Wan image-to-video tests use; the tokenizer is built here by
  `studio_nova.models.tiny.build_tokenizer`, so nothing is downloaded.

They use the real classes, seeded, so a test runs the generator's whole path — `from_pretrained`
from a folder included — on CPU in seconds. What they make is noise: tests check plumbing, sizes,
seeding and caching, never image quality.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

TINY_WAN_I2V_TRANSFORMER = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 36,  # 16 noise + 4 mask + 16 image-condition latent channels
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
    "image_dim": 4,  # the CLIP vision encoder's hidden size
}


def build_tiny_t2i(folder: str | Path, seed: int = 0) -> Path:
    """A text-to-image FLUX folder (loads with `AutoPipelineForText2Image`)."""
    from diffusers import FluxKontextPipeline, FluxPipeline

    from studio_nova.testing.tiny_models import build_tiny_flux_kontext

    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="tiny-flux-") as scratch:
        kontext = FluxKontextPipeline.from_pretrained(
            build_tiny_flux_kontext(Path(scratch) / "kontext", seed=seed), local_files_only=True
        )
        names = ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "transformer")
        FluxPipeline(**{name: kontext.components[name] for name in names}).save_pretrained(
            folder, safe_serialization=True
        )
    return folder


def build_tiny_wan_i2v(folder: str | Path, seed: int = 0) -> Path:
    """A Wan 2.1 image-to-video folder (loads with `WanImageToVideoPipeline`)."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
    )

    from studio_nova.models.tiny import TINY_TEXT_ENCODER, TINY_VAE, build_tokenizer

    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="tiny-wan-tokenizer-") as scratch:
        build_tokenizer(Path(scratch))
        tokenizer = AutoTokenizer.from_pretrained(scratch)
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(**TINY_WAN_I2V_TRANSFORMER)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(**TINY_VAE)
    torch.manual_seed(seed + 2)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TINY_TEXT_ENCODER))
    torch.manual_seed(seed + 3)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=4,
        )
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        transformer=transformer,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def ensure_tiny_backgrounds(root: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """(t2i folder, i2v folder) under `root`, built on first use so test files can share them."""
    root = Path(root)
    folders = []
    for name, build in (("t2i", build_tiny_t2i), ("wan-i2v", build_tiny_wan_i2v)):
        folder = root / f"{name}-seed{seed}"
        if not (folder / "model_index.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder, seed=seed)
        folders.append(folder)
    return folders[0], folders[1]
