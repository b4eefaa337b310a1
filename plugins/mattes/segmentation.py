"""`segmentation`: a promptable video segmentation model (SAM 2 through transformers) as the matte.

For subjects that were not shot against a screen. The subject is picked on one source frame by
``points`` ([[x, y], ...] in pixels, ``labels`` 1 = subject / 0 = not, all 1 by default) and/or
a ``box`` ([x0, y0, x1, y1] px); ``frame`` is the source frame they are on (default: the first
frame this source is asked for). The model (``Sam2VideoModel`` from transformers, weights from
a local folder only: ``model_dir`` or the setting STUDIO_NOVA_SEGMENTATION_DIR) tracks it through
each chunk; the next chunk is prompted with the mask this source gave for its first frame (chunks
overlap), so the subject is followed through the shot in order. The matte is the model's
probability, upsampled from its mask resolution (soft but coarse edges: a segmentation matte
separates subject from background, it does not pull hair).

Frames are resized and normalised here (ImageNet mean / std at the model's square input size,
as transformers' SAM 2 video processor does) so that the processor, which needs torchvision, is
not needed. torch and transformers are imported only when a matte is made.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from studio_nova.config import Settings
from studio_nova.errors import ConfigError, EditRequestError, PropagationError
from studio_nova.plugin_api.mattes import Matte, MatteContext

from ._params import as_float, check_names, number

NAME = "segmentation"
SETTING = "STUDIO_NOVA_SEGMENTATION_DIR"
_PARAMS = ("model_dir", "points", "labels", "box", "frame", "device")
_MODEL_TYPES = ("sam2_video",)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def weights_problem(folder: str | None, origin: str) -> str | None:
    """Why `folder` cannot be used as a SAM 2 video model, or None when it can (cheap: no loading)."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        return f"needs {', '.join(missing)}: pip install 'studio-nova[model]'"
    if not folder:
        return f"{origin} is not set; point it at a local folder of a SAM 2 video model (transformers layout)"
    path = Path(folder).expanduser()
    if not path.is_dir():
        return f"{origin}={folder} does not exist or is not a folder"
    config = path / "config.json"
    if not config.is_file():
        return f"{origin}={folder} lacks config.json (expected a transformers Sam2VideoModel folder)"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        return f"{origin}={folder}: config.json cannot be read ({exc})"
    if model_type not in _MODEL_TYPES:
        return f"{origin}={folder} holds a {model_type!r} model, not one of {list(_MODEL_TYPES)}"
    if not any(path.glob("*.safetensors")):
        return f"{origin}={folder} lacks its weights (*.safetensors)"
    return None


class SegmentationMatte:
    """SAM 2 video segmentation from local weights, prompted with points or a box on one frame."""

    name: ClassVar[str] = NAME
    sequential: ClassVar[bool] = True  # tracks from its prompt in order; needs the overlap to carry
    context_frames: ClassVar[int] = 1

    def __init__(self, **params: Any) -> None:
        check_names(NAME, params, _PARAMS)
        self.model_dir = params.get("model_dir")
        if self.model_dir is not None and not isinstance(self.model_dir, str):
            raise EditRequestError(f"matte source {NAME!r}: model_dir must be a folder path, got {self.model_dir!r}")
        self.points = _points(params.get("points"))
        self.labels = _labels(params.get("labels"), len(self.points))
        self.box = _box(params.get("box"))
        if not self.points and self.box is None:
            raise EditRequestError(
                f"matte source {NAME!r} needs points or a box on the subject (pixels of the prompt frame)"
            )
        frame = params.get("frame")
        self.frame = None if frame is None else int(number(NAME, "frame", frame, low=0, integer=True))
        self.device = params.get("device", "auto")
        if self.device not in ("auto", "cpu") and not str(self.device).startswith("cuda"):
            raise EditRequestError(f"matte source {NAME!r}: device must be auto, cpu or cuda[:N], got {self.device!r}")
        self._model: Any = None
        self._carry: dict[int, np.ndarray] = {}  # source frame -> mask given, for the next chunk

    @classmethod
    def readiness(cls, settings: Settings) -> tuple[bool, str | None]:
        problem = weights_problem(settings.segmentation_dir, SETTING)
        return problem is None, problem

    def mattes(self, context: MatteContext) -> Matte:
        settings = context.settings
        folder, origin = (self.model_dir, "model_dir") if self.model_dir else (settings.segmentation_dir, SETTING)
        problem = weights_problem(folder, origin)
        if problem is not None:
            raise ConfigError(f"matte source {NAME!r} cannot run: {problem}", shot=context.shot)
        n, h, w = context.frames.shape[:3]
        first = context.first_frame
        if self.frame is None:
            self.frame = first
        self._check_prompt(w, h, context)
        if first <= self.frame < first + n:
            prompt_index, mask = self.frame - first, None
        elif first in self._carry:
            prompt_index, mask = 0, self._carry[first]
        else:
            raise PropagationError(
                f"matte source {NAME!r} tracks from its prompt on source frame {self.frame} in order; "
                f"chunk {first}..{first + n - 1} comes without the chunk before it (rerun the shot "
                f"from its first chunk)",
                shot=context.shot,
                frame=first,
            )
        alpha = self._track(context.frames, prompt_index, mask, str(Path(folder).expanduser()), settings.device)
        self._carry = {first + i: alpha[i] for i in range(n)}
        return Matte(alpha=alpha, info={"source": NAME, "prompt_frame": self.frame, "model_dir": str(folder)})

    # --- the model --------------------------------------------------------------------------

    def _check_prompt(self, w: int, h: int, context: MatteContext) -> None:
        coords = list(self.points) + ([] if self.box is None else [self.box[:2], self.box[2:]])
        for x, y in coords:
            if not (0 <= x < w and 0 <= y < h):
                raise EditRequestError(
                    f"matte source {NAME!r}: prompt point ({x}, {y}) lies outside the {w}x{h} frame",
                    shot=context.shot,
                )

    def _track(
        self, frames: np.ndarray, prompt: int, mask: np.ndarray | None, folder: str, configured: str
    ) -> np.ndarray:
        import torch
        from transformers.models.sam2_video.modeling_sam2_video import (
            Sam2VideoInferenceSession,
        )

        device = _device(self.device, configured)
        if self._model is None:
            from transformers import Sam2VideoModel

            self._model = Sam2VideoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        model = self._model
        size = int(model.config.image_size)
        n, h, w = frames.shape[:3]
        pixels = _preprocess(frames, size, device)
        alpha = np.zeros((n, h, w), np.float32)
        with torch.no_grad():
            # Forward from the prompt, then backward from it, each in its own session.
            for order in (range(prompt, n), range(prompt, -1, -1)):
                indices = list(order)
                if len(indices) <= 1 and order.step == -1:
                    continue
                session = Sam2VideoInferenceSession(
                    video=pixels[indices], video_height=h, video_width=w, inference_device=device,
                    video_storage_device=device, inference_state_device=device, dtype=torch.float32,
                )
                obj = session.obj_id_to_idx(1)
                if mask is not None and order.step == 1:
                    self._prompt_mask(session, obj, mask, size, device)
                else:
                    self._prompt_points(session, obj, w, h, size, device)
                session.obj_with_new_inputs = [1]
                for output in model.propagate_in_video_iterator(session, start_frame_idx=0):
                    logits = torch.nn.functional.interpolate(
                        output.pred_masks[:, :1].float(), size=(h, w), mode="bilinear", align_corners=False
                    )
                    alpha[indices[output.frame_idx]] = torch.sigmoid(logits)[0, 0].cpu().numpy()
        return alpha

    def _prompt_points(self, session: Any, obj: int, w: int, h: int, size: int, device: Any) -> None:
        import torch

        coords = [(x * size / w, y * size / h) for x, y in self.points]
        labels = list(self.labels)
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            coords = [(x0 * size / w, y0 * size / h), (x1 * size / w, y1 * size / h)] + coords
            labels = [2, 3] + labels
        session.add_point_inputs(obj, 0, {
            "point_coords": torch.tensor([[coords]], dtype=torch.float32, device=device),
            "point_labels": torch.tensor([[labels]], dtype=torch.int32, device=device),
        })

    def _prompt_mask(self, session: Any, obj: int, mask: np.ndarray, size: int, device: Any) -> None:
        import torch

        tensor = torch.from_numpy((mask > 0.5).astype(np.float32))[None, None].to(device)
        tensor = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
        session.add_mask_inputs(obj, 0, (tensor >= 0.5).float())


def _preprocess(frames: np.ndarray, size: int, device: Any) -> Any:
    import torch

    video = torch.from_numpy(as_float(frames)).permute(0, 3, 1, 2)
    video = torch.nn.functional.interpolate(video, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
    mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_STD).view(1, 3, 1, 1)
    return ((video - mean) / std).to(device)


def _device(choice: str, configured: str) -> Any:
    """The torch device: the ``device`` param, else (``auto``) the ``device`` setting, else CUDA
    when there is one."""
    import torch

    if choice == "auto":
        if configured != "auto":
            return torch.device(configured)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def _points(value: Any) -> list[tuple[float, float]]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in value
    ):
        raise EditRequestError(f"matte source {NAME!r}: points must be [[x, y], ...] in pixels, got {value!r}")
    return [(float(number(NAME, "points", p[0], low=0.0)), float(number(NAME, "points", p[1], low=0.0))) for p in value]


def _labels(value: Any, count: int) -> list[int]:
    if value is None:
        return [1] * count
    if not isinstance(value, (list, tuple)) or len(value) != count or any(v not in (0, 1) for v in value):
        raise EditRequestError(
            f"matte source {NAME!r}: labels must be one 0 / 1 per point ({count} points), got {value!r}"
        )
    return [int(v) for v in value]


def _box(value: Any) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise EditRequestError(f"matte source {NAME!r}: box must be [x0, y0, x1, y1] in pixels, got {value!r}")
    x0, y0, x1, y1 = (float(number(NAME, "box", v, low=0.0)) for v in value)
    if x1 <= x0 or y1 <= y0 or not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise EditRequestError(f"matte source {NAME!r}: box must have x0 < x1 and y0 < y1, got {list(value)}")
    return x0, y0, x1, y1
