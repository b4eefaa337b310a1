"""`flux-kontext`: keyframes edited by FLUX.1 Kontext (diffusers `FluxKontextPipeline`).

Weights come only from a local folder in diffusers layout (`STUDIO_NOVA_FLUX_KONTEXT_DIR` or
params `model_dir`), e.g. a copy of FLUX.1-Kontext-dev.

How the reference is given: Kontext reads exactly one image. To edit a later keyframe so that it
shares the look of the first edited keyframe, the two are put side by side on one canvas —
reference on the left, keyframe on the right, each at the working resolution — the instruction
asks for the edit on the right half to match the left, the model renders the whole canvas, and the
right half is cut out as the result. The first keyframe is edited alone, at the working size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from studio_nova.errors import EditRequestError
from studio_nova_plugins.editors._model_editing import ModelEditor, RunSettings, to_pil

# How the instruction is worded when a reference stands on the left of the canvas.
REFERENCE_PROMPT = (
    "{instruction}. Apply this edit to the right image only, exactly as it was already applied in "
    "the left image: same colours, materials and style. Keep the left image unchanged."
)


class FluxKontextEditor(ModelEditor):
    """FLUX.1 Kontext, consistency-aware (see the module docstring for the reference canvas).

    Params: those of every model editor (``model_dir``, ``steps`` = 28, ``guidance_scale`` =
    2.5, ``max_area`` = 1024², ``dtype``, ``offload``, ``mask``, ``mask_threshold``) plus
    ``reference_prompt``: the wording used with a reference, with ``{instruction}`` in it.
    """

    name = "flux-kontext"
    setting = "flux_kontext_dir"
    what = "FLUX.1 Kontext"
    parts = {
        "transformer": "weights",
        "vae": "weights",
        "text_encoder": "weights",
        "text_encoder_2": "weights",
        "tokenizer": "config:tokenizer.json|vocab.json",
        "tokenizer_2": "config:tokenizer.json|spiece.model",
        "scheduler": "config:scheduler_config.json",
    }
    default_steps = 28
    default_guidance = 2.5
    extra_params = ("reference_prompt",)

    def _parse_extra(self, params: Mapping[str, Any], shot: str) -> dict[str, Any]:
        template = params.get("reference_prompt", REFERENCE_PROMPT)
        if not isinstance(template, str) or "{instruction}" not in template:
            raise EditRequestError(
                f"{self.name} param reference_prompt must be text holding {{instruction}}, got {template!r}", shot=shot
            )
        return {"reference_prompt": template}

    def _load(self, folder: Path, dtype: Any) -> Any:
        from diffusers import FluxKontextPipeline

        return FluxKontextPipeline.from_pretrained(
            folder, dtype=dtype, local_files_only=True, use_safetensors=True
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
        height, width = size
        if reference is None:
            canvas, prompt = keyframe, instruction
        else:
            canvas = np.concatenate([reference, keyframe], axis=1)
            prompt = dict(run.extra)["reference_prompt"].format(instruction=instruction)
        canvas_h, canvas_w = canvas.shape[:2]
        out = pipe(
            image=to_pil(canvas),
            prompt=prompt,
            height=canvas_h,
            width=canvas_w,
            # Kontext would otherwise snap to its preferred resolutions; the editor chose the size.
            max_area=canvas_h * canvas_w,
            _auto_resize=False,
            num_inference_steps=run.steps,
            guidance_scale=run.guidance_scale,
            generator=generator,
            output_type="np",
        ).images[0]
        return out[:, -width:] if reference is not None else out
