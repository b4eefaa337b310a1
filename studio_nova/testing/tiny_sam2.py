"""A tiny random SAM 2 video model in the real on-disk format, for the `segmentation` matte's tests."""

from __future__ import annotations

from pathlib import Path


def build_tiny_sam2(folder: Path) -> Path:
    """A randomly initialised SAM 2 video model at toy size, saved like a real one (no hub)."""
    import torch
    import transformers

    backbone = transformers.Sam2HieraDetConfig(
        hidden_size=12, num_channels=3, image_size=128, patch_stride=4, patch_kernel_size=7, patch_padding=3,
        blocks_per_stage=[1, 1, 1, 1], embed_dim_per_stage=[12, 24, 48, 96],
    )
    vision = transformers.Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=128,
    )
    # Memory widths as in the real model (hidden a multiple of the 64-wide memory; the memory
    # cross-attention is 64 wide in transformers whatever the config says).
    config = transformers.Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=transformers.Sam2VideoPromptEncoderConfig(
            image_size=128, patch_size=16, mask_input_channels=8, hidden_size=128, num_point_embeddings=4),
        mask_decoder_config=transformers.Sam2VideoMaskDecoderConfig(
            hidden_size=128, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32),
        image_size=128, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[8, 8],
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128,
    )
    torch.manual_seed(0)
    transformers.Sam2VideoModel(config).eval().save_pretrained(folder)
    return folder
