"""`qwen-image-edit`: keyframes edited by Qwen-Image-Edit (diffusers `QwenImageEditPlusPipeline`).

Weights come only from a local folder in diffusers layout (`STUDIO_NOVA_QWEN_IMAGE_EDIT_DIR` or
params `model_dir`), e.g. a copy of Qwen-Image-Edit-2509. The pipeline takes several input
images, so the reference is given as a second picture: "Picture 1" is the keyframe to edit,
"Picture 2" the first edited keyframe of the shot, and the instruction asks for Picture 1 to be
edited to match Picture 2. The first keyframe is edited alone.

The folder's `processor/` is loaded for images only: its video processor needs torchvision,
which the model plugins do not require (keyframes are still images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from studio_nova.errors import EditRequestError
from studio_nova_plugins.editors._model_editing import ModelEditor, RunSettings, number_param, to_pil

REFERENCE_PROMPT = (
    "{instruction} in Picture 1. Picture 2 shows the same edit already made on another frame of "
    "the same shot: match its colours, materials and style exactly."
)
DEFAULT_NEGATIVE_PROMPT = " "


def image_only_processor_class() -> type:
    """A `Qwen2VLProcessor` that has no video processor (which would need torchvision)."""
    from transformers import Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(
            self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any
        ) -> None:
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return ImageOnlyQwen2VLProcessor


class QwenImageEditEditor(ModelEditor):
    """Qwen-Image-Edit (Plus), consistency-aware through its multi-image input.

    Params: those of every model editor (``model_dir``, ``steps`` = 40, ``guidance_scale`` = 1.0
    — only for guidance-distilled checkpoints, ``max_area`` = 1024², ``dtype``, ``offload``,
    ``mask``, ``mask_threshold``) plus ``true_cfg_scale`` (default 4.0; classifier-free guidance,
    1 turns it off and halves the time), ``negative_prompt`` (default " ") and
    ``reference_prompt`` (the wording used with a reference, with ``{instruction}`` in it).
    """

    name = "qwen-image-edit"
    setting = "qwen_image_edit_dir"
    what = "Qwen-Image-Edit"
    parts = {
        "transformer": "weights",
        "vae": "weights",
        "text_encoder": "weights",
        "tokenizer": "config:tokenizer.json|vocab.json",
        "processor": "config:preprocessor_config.json|processor_config.json",
        "scheduler": "config:scheduler_config.json",
    }
    default_steps = 40
    default_guidance = 1.0
    extra_params = ("true_cfg_scale", "negative_prompt", "reference_prompt")

    def _parse_extra(self, params: Mapping[str, Any], shot: str) -> dict[str, Any]:
        template = params.get("reference_prompt", REFERENCE_PROMPT)
        if not isinstance(template, str) or "{instruction}" not in template:
            raise EditRequestError(
                f"{self.name} param reference_prompt must be text holding {{instruction}}, got {template!r}", shot=shot
            )
        negative = params.get("negative_prompt", DEFAULT_NEGATIVE_PROMPT)
        if not isinstance(negative, str):
            raise EditRequestError(f"{self.name} param negative_prompt must be text, got {negative!r}", shot=shot)
        return {
            "reference_prompt": template,
            "negative_prompt": negative,
            "true_cfg_scale": number_param(params, "true_cfg_scale", 4.0, float, 1.0, 100.0, self.name, shot),
        }

    def _load(self, folder: Path, dtype: Any) -> Any:
        from diffusers import QwenImageEditPlusPipeline

        processor = image_only_processor_class().from_pretrained(folder / "processor", local_files_only=True)
        return QwenImageEditPlusPipeline.from_pretrained(
            folder, processor=processor, dtype=dtype, local_files_only=True, use_safetensors=True
        )

    def _generate(
        self,
        pipe: Any,
        keyframe: np.ndarray,
        reference: np.ndarray | None,
        instruction: str,
        run: RunSettings,
        size: tuple[int, int],
        generator: Any,
    ) -> np.ndarray:
        extra = dict(run.extra)
        if reference is None:
            images, prompt = [to_pil(keyframe)], instruction
        else:
            images = [to_pil(keyframe), to_pil(reference)]
            prompt = extra["reference_prompt"].format(instruction=instruction)
        cfg = extra["true_cfg_scale"]
        return pipe(
            image=images,
            prompt=prompt,
            negative_prompt=extra["negative_prompt"] if cfg > 1.0 else None,
            true_cfg_scale=cfg,
            height=size[0],
            width=size[1],
            num_inference_steps=run.steps,
            guidance_scale=run.guidance_scale if run.guidance_scale > 1.0 else None,
            generator=generator,
            output_type="np",
        ).images[0]
