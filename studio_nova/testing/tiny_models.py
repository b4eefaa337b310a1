"""Tiny, randomly initialised image-edit models in diffusers layout, built locally.

They use the real classes (transformer, VAE, text encoders, tokenizers, processor) at toy size,
seeded, so a test can run an editor's whole code path — `from_pretrained` from a folder
included — on CPU in about a second, without downloading anything. Tokenizers are built from a
small vocabulary made here (character-level CLIP and T5 vocabularies, a byte-level Qwen one), so
any instruction tokenizes. The pictures they make are noise: tests check plumbing, shapes,
seeding, compositing and what the pipeline receives, never image quality.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

# Every printable ASCII character is in the vocabularies, so no instruction hits an unknown token.
_CHARS = sorted(set(string.ascii_letters + string.digits + string.punctuation))


def build_tiny_flux_kontext(folder: str | Path, seed: int = 0) -> Path:
    """A FLUX.1 Kontext folder (transformer, VAE, CLIP + T5, tokenizers, scheduler)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

    folder = Path(folder)
    vocab: dict[str, int] = {}
    for char in _CHARS:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    clip_tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    t5_pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)] + [(c, -2.0) for c in _CHARS]
    t5_tokenizer = T5Tokenizer(vocab=t5_pieces, extra_ids=0)

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[2, 2, 4],
        guidance_embeds=True,
    )
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(vocab),
            projection_dim=32,
            max_position_embeddings=77,
        )
    )
    torch.manual_seed(seed + 2)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
            decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        )
    )
    torch.manual_seed(seed + 3)
    vae = AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
    )
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_qwen_image_edit(folder: str | Path, seed: int = 0) -> Path:
    """A Qwen-Image-Edit (Plus) folder (transformer, VAE, Qwen2.5-VL, tokenizer, processor)."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from tokenizers import pre_tokenizers
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    from studio_nova_plugins.editors.qwen_image_edit import image_only_processor_class

    folder = Path(folder)
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
        "<|video_pad|>",
    ]
    for special in specials:
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], extra_special_tokens=specials[1:])
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=28 * 28 * 16 * 16, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    processor = image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer)

    torch.manual_seed(seed)
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=2, bos_token_id=vocab["<|endoftext|>"],
                eos_token_id=vocab["<|im_end|>"],
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1, 1, 2]},
            ),
            vision_config=dict(
                depth=2, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16,
                fullatt_block_indexes=[1], window_size=112,
            ),
            image_token_id=vocab["<|image_pad|>"],
            video_token_id=vocab["<|video_pad|>"],
            vision_start_token_id=vocab["<|vision_start|>"],
            vision_end_token_id=vocab["<|vision_end|>"],
        )
    )
    torch.manual_seed(seed + 1)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed + 2)
    # Four downsamplings (×16) keep the pipeline's fixed 1024²-area reference encodes cheap.
    vae = AutoencoderKLQwenImage(
        base_dim=2, z_dim=4, dim_mult=[1, 1, 1, 1, 1], num_res_blocks=0,
        temperal_downsample=[False, True, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    )
    pipe = QwenImageEditPlusPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
        tokenizer=tokenizer, processor=processor, transformer=transformer,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    # The real checkpoints name the stock processor class; ours is only a loader-side shim.
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_path.write_text(json.dumps(index, indent=2))
    processor_path = folder / "processor" / "processor_config.json"
    config = json.loads(processor_path.read_text())
    config["processor_class"] = "Qwen2VLProcessor"
    processor_path.write_text(json.dumps(config, indent=2))
    return folder


BUILDERS = {"flux-kontext": build_tiny_flux_kontext, "qwen-image-edit": build_tiny_qwen_image_edit}


def ensure_tiny_model(kind: str, root: str | Path, seed: int = 0) -> Path:
    """The tiny `kind` model under `root` (built on first use), so test files can share one."""
    if kind not in BUILDERS:
        raise ValueError(f"kind must be one of {sorted(BUILDERS)}, got {kind!r}")
    folder = Path(root) / f"{kind}-seed{seed}"
    if not (folder / "model_index.json").is_file():
        BUILDERS[kind](folder, seed=seed)
    return folder
