"""What the image-edit-model editors (`flux-kontext`, `qwen-image-edit`) share.

Both editors do the same things around a different diffusers pipeline: find and check the local
weights folder (never fetching anything), pick device / dtype / CPU offload, send every keyframe
to the model's working resolution and bring the result back to the source size, keep the shot
consistent by editing later keyframes against the first *edited* one, confine the edit to a
region, and seed the model so that a seed always gives the same keyframes. Each editor only says
how its pipeline is loaded and called (`ModelEditor._load` / `ModelEditor._generate`).

torch, diffusers and transformers are imported inside functions so that `studio-nova` without
the `model` extra still imports this module (and `editors list` can say what is missing).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import cv2
import numpy as np

from studio_nova.config import Settings
from studio_nova.errors import ConfigError, EditRequestError, KeyframeError, StudioNovaError
from studio_nova.plugin_api.editing import EditContext, EditedKeyframe, EditResult

DTYPES = ("auto", "bf16", "fp16", "fp32")
MASK_MODES = ("difference", "full")
DEFAULT_MASK_THRESHOLD = 0.06
# How far (in [0, 1] of a channel) around the threshold the difference mask ramps from 0 to 1:
# a hard threshold would make the mask flicker between keyframes on pixels near it.
MASK_SOFTNESS = 0.03


@dataclass(frozen=True)
class RunSettings:
    """The validated settings of one `edit()` call; recorded in `info["settings"]`."""

    steps: int
    guidance_scale: float
    max_area: int
    dtype: str
    offload: bool
    device: str
    mask: str
    mask_threshold: float
    extra: tuple[tuple[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out.update(dict(self.extra))
        return out


# --- weights folder --------------------------------------------------------------------------


def missing_parts(folder: Path, parts: Mapping[str, str]) -> list[str]:
    """What a diffusers-layout folder lacks: `parts` maps a sub-path to what it must hold.

    A component folder must hold a config and safetensors weights (`"weights"`), or just a
    config file named by the value (`"config:NAME"`); `model_index.json` is always required.
    """
    missing = [] if (folder / "model_index.json").is_file() else ["model_index.json"]
    for sub, need in parts.items():
        path = folder / sub
        if not path.is_dir():
            missing.append(f"{sub}/")
        elif need == "weights":
            if not (path / "config.json").is_file():
                missing.append(f"{sub}/config.json")
            if not any(path.glob("*.safetensors")):
                missing.append(f"{sub}/*.safetensors")
        elif need.startswith("config:"):
            for name in need[len("config:") :].split("|"):
                if (path / name).is_file():
                    break
            else:
                missing.append(f"{sub}/{need[len('config:'):]}")
    return missing


def layout_text(parts: Mapping[str, str]) -> str:
    """The expected folder layout, for error messages and `editors list`."""
    items = ["model_index.json"]
    for sub, need in parts.items():
        items.append(f"{sub}/ (config.json + *.safetensors)" if need == "weights" else f"{sub}/")
    return ", ".join(items)


def model_readiness(
    configured: str | None, setting: str, parts: Mapping[str, str], what: str
) -> tuple[bool, str | None]:
    """(ready, reason) for a model editor whose weights live in a local folder."""
    missing_modules = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
    if missing_modules:
        return False, f"needs {', '.join(missing_modules)}: pip install 'studio-nova[model]'"
    env = f"STUDIO_NOVA_{setting.upper()}"
    if not configured:
        return False, f"{env} is not set; point it at a local folder of {what} in diffusers layout"
    folder = Path(configured).expanduser()
    if not folder.is_dir():
        return False, f"{env}={configured} does not exist or is not a folder"
    missing = missing_parts(folder, parts)
    if missing:
        return False, f"{env}={configured} lacks {', '.join(missing)} (expected: {layout_text(parts)})"
    return True, None


# --- geometry and compositing ----------------------------------------------------------------


def working_size(height: int, width: int, max_area: int, multiple: int) -> tuple[int, int]:
    """The model's (height, width): the source aspect at about `max_area` pixels, on its grid."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {width}×{height}")
    scale = math.sqrt(max_area / (height * width))
    out_h = max(multiple, int(round(height * scale / multiple)) * multiple)
    out_w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return out_h, out_w


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Float image resize: area averaging down, bicubic up (clipped back into [0, 1])."""
    if image.shape[:2] == (height, width):
        return image.astype(np.float32, copy=True)
    shrinking = height * width < image.shape[0] * image.shape[1]
    method = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    out = cv2.resize(image.astype(np.float32), (width, height), interpolation=method)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), mode="RGB")


def difference_mask(original: np.ndarray, edited: np.ndarray, threshold: float) -> np.ndarray:
    """Where the model really changed the picture, as a soft H×W mask.

    A model re-renders every pixel (its VAE alone shifts them a little), so "changed" means the
    locally averaged difference exceeds `threshold`; the ramp keeps the mask soft.
    """
    diff = np.abs(edited.astype(np.float32) - original.astype(np.float32)).max(axis=2)
    sigma = max(1.0, 0.004 * max(diff.shape))
    diff = cv2.GaussianBlur(diff, (0, 0), sigma)
    low, high = threshold - MASK_SOFTNESS, threshold + MASK_SOFTNESS
    t = np.clip((diff - low) / (high - low), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def composite(
    original: np.ndarray, edited: np.ndarray, region: np.ndarray | None, mode: str, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask) at the source size: the edit only where the mask says, originals elsewhere.

    Outside the mask (mask == 0) the output is the original pixel exactly, never resampled.
    """
    if mode == "difference":
        mask = difference_mask(original, edited, threshold)
    else:
        mask = np.ones(original.shape[:2], np.float32)
    if region is not None:
        mask = mask * region
    mask = mask.astype(np.float32)
    blend = np.clip(original + mask[..., None] * (edited - original), 0.0, 1.0)
    # Exact at both ends: the original pixel where mask is 0, the model's where it is 1.
    image = np.where(mask[..., None] >= 1, edited, np.where(mask[..., None] > 0, blend, original))
    return image.astype(np.float32), mask


# --- input checks ----------------------------------------------------------------------------


def check_keyframes(context: EditContext) -> list[np.ndarray]:
    images = []
    size = None
    for keyframe in context.keyframes:
        image = np.asarray(keyframe.image)
        if image.ndim != 3 or image.shape[2] != 3 or not np.issubdtype(image.dtype, np.floating):
            raise KeyframeError(
                f"keyframe must be float RGB H×W×3 in [0, 1], got {image.dtype} {image.shape}",
                shot=context.shot,
                frame=keyframe.source_frame,
            )
        if size is not None and image.shape != size:
            raise KeyframeError(
                f"keyframe is {image.shape[1]}×{image.shape[0]} but the shot's first keyframe is {size[1]}×{size[0]}",
                shot=context.shot,
                frame=keyframe.source_frame,
            )
        size = image.shape
        images.append(image.astype(np.float32, copy=False))
    return images


def check_region(context: EditContext, size: tuple[int, int]) -> np.ndarray | None:
    if context.region is None:
        return None
    region = np.asarray(context.region, dtype=np.float32)
    if region.shape != tuple(size):
        raise EditRequestError(
            f"region mask is {region.shape[::-1]} (W×H) but the keyframes are {size[::-1]}",
            shot=context.shot,
        )
    if not np.all(np.isfinite(region)) or region.min() < 0.0 or region.max() > 1.0:
        raise EditRequestError("region mask must hold values in [0, 1]", shot=context.shot)
    return region


def check_reference(context: EditContext) -> np.ndarray | None:
    if context.reference is None:
        return None
    reference = np.asarray(context.reference)
    if reference.ndim != 3 or reference.shape[2] != 3 or not np.issubdtype(reference.dtype, np.floating):
        raise EditRequestError(
            f"reference must be float RGB H×W×3 in [0, 1], got {reference.dtype} {reference.shape}",
            shot=context.shot,
        )
    return np.clip(reference.astype(np.float32), 0.0, 1.0)


def number_param(
    params: Mapping[str, Any], name: str, default: Any, kind: type, low: float, high: float, editor: str, shot: str
) -> Any:
    """A numeric param, validated (an EditRequestError naming it otherwise)."""
    value = params.get(name, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok or not low <= value <= high:
        raise EditRequestError(
            f"{editor} param {name} must be a{'n int' if kind is int else ' number'} in [{low}, {high}], got {value!r}",
            shot=shot,
        )
    return kind(value)


def choice_param(
    params: Mapping[str, Any], name: str, default: str, choices: Sequence[str], editor: str, shot: str
) -> str:
    value = params.get(name, default)
    if value not in choices:
        raise EditRequestError(f"{editor} param {name} must be one of {list(choices)}, got {value!r}", shot=shot)
    return str(value)


# --- device / dtype --------------------------------------------------------------------------


def resolve_device(configured: str) -> str:
    import torch

    if configured == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if configured.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"STUDIO_NOVA_DEVICE={configured} but torch sees no CUDA device; use cpu or auto")
    return configured


def resolve_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        name = "bf16" if device.startswith("cuda") else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


# --- the shared editor -----------------------------------------------------------------------


class ModelEditor:
    """Consistency-aware editing of a shot's keyframes with a local image-edit model.

    Subclasses set the class attributes and implement `_load` and `_generate`. Settings (the
    weights folder named by `setting`, ``device``, ``model_offload``) are the ones the editor was
    made with (`from_settings`, as the registry makes it for a run), else the context's
    (`EditContext.settings`); the environment is never read here. Params shared by both model
    editors (all optional):

    - ``model_dir``: the weights folder; default: the editor's setting (see `setting`).
    - ``steps`` (default `default_steps`), ``guidance_scale`` (default `default_guidance`).
    - ``max_area``: pixels of the model's working resolution (default `default_area`); the
      keyframe is resized to it, keeping its aspect, and the result back to the source size.
    - ``dtype``: auto|bf16|fp16|fp32 (auto: bf16 on CUDA, fp32 on CPU).
    - ``offload``: CPU-offload the model's components between uses (default: the
      ``model_offload`` setting); for GPUs too small to hold the whole model. Needs ``accelerate``.
    - ``mask``: ``difference`` (default) keeps the original pixels wherever the model changed
      less than ``mask_threshold`` (default 0.06), ``full`` takes the model's whole picture.
    """

    name: ClassVar[str]
    setting: ClassVar[str]  # Settings field of the weights folder
    what: ClassVar[str]  # the model, in words
    parts: ClassVar[Mapping[str, str]]  # expected diffusers layout (see `missing_parts`)
    default_steps: ClassVar[int] = 28
    default_guidance: ClassVar[float] = 2.5
    default_area: ClassVar[int] = 1024 * 1024
    extra_params: ClassVar[tuple[str, ...]] = ()
    common_params: ClassVar[tuple[str, ...]] = (
        "model_dir", "steps", "guidance_scale", "max_area", "dtype", "offload", "mask", "mask_threshold",
    )

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings  # None: each edit's `context.settings`
        self._pipe: Any = None
        self._pipe_key: tuple[Any, ...] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> ModelEditor:
        """The editor for a run with `settings` (how the registry makes it)."""
        return cls(settings, **options)

    @classmethod
    def check_params(cls, params: Mapping[str, Any], *, instruction: str, settings: Settings, **_: Any) -> None:
        """Refuse a request `edit` would refuse before loading anything: its params and
        instruction, and the weights folder they and the settings name (files only)."""
        context = EditContext(shot="", keyframes=[], instruction=instruction, params=params, settings=settings)
        editor = cls(settings)
        editor._parse_params(context)
        editor._model_dir(context)

    @classmethod
    def readiness(cls, settings: Settings) -> tuple[bool, str | None]:
        """Whether the weights this editor needs are where the settings say (nothing is loaded)."""
        return model_readiness(getattr(settings, cls.setting), cls.setting, cls.parts, cls.what)

    def _settings_for(self, context: EditContext) -> Settings:
        return self._settings if self._settings is not None else context.settings

    # 1. Entry point -----------------------------------------------------------------------------

    def edit(self, context: EditContext) -> EditResult:
        # 1. Check the request before touching the model.
        images = check_keyframes(context)
        if not images:
            return EditResult(keyframes=[], info=self._info(context, None, None, False))
        region = check_region(context, images[0].shape[:2])
        given_reference = check_reference(context)
        run = self._parse_params(context)
        folder = self._model_dir(context)
        # 2. Load (or reuse) the pipeline.
        pipe = self._pipeline(folder, run, context.shot)
        # 3. Edit: the first keyframe alone (or against the given reference), every later one
        #    against the first *edited* keyframe, so that all of them share one look.
        height, width = images[0].shape[:2]
        size = working_size(height, width, run.max_area, self._multiple(pipe))
        edited: list[EditedKeyframe] = []
        reference = given_reference
        for keyframe, image in zip(context.keyframes, images):
            out = self._edit_one(pipe, image, reference, context, run, size, keyframe.source_frame)
            out = resize(out, height, width)
            final, mask = composite(image, out, region, run.mask, run.mask_threshold)
            edited.append(EditedKeyframe(keyframe.source_frame, final, mask))
            if reference is None:
                reference = final
        return EditResult(keyframes=edited, info=self._info(context, folder, run, given_reference is not None))

    def _edit_one(
        self,
        pipe: Any,
        image: np.ndarray,
        reference: np.ndarray | None,
        context: EditContext,
        run: RunSettings,
        size: tuple[int, int],
        frame: int,
    ) -> np.ndarray:
        import torch

        keyframe_in = resize(image, *size)
        reference_in = None if reference is None else resize(reference, *size)
        # A CPU generator gives the same noise on every device, so a seed means one result.
        generator = torch.Generator(device="cpu").manual_seed(int(context.seed))
        try:
            out = self._generate(pipe, keyframe_in, reference_in, context.instruction, run, size, generator)
        except StudioNovaError:
            raise
        except (RuntimeError, ValueError) as exc:
            raise KeyframeError(
                f"{self.name} failed on this keyframe: {type(exc).__name__}: {exc}",
                shot=context.shot,
                frame=frame,
            ) from exc
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (*size, 3):
            raise KeyframeError(
                f"{self.name} returned an image of {out.shape} for a working size of {size}",
                shot=context.shot,
                frame=frame,
            )
        return np.clip(out, 0.0, 1.0)

    # 2. Settings ----------------------------------------------------------------------------------

    def _parse_params(self, context: EditContext) -> RunSettings:
        params = dict(context.params or {})
        shot, name = context.shot, self.name
        unknown = sorted(set(params) - set(self.common_params) - set(self.extra_params))
        if unknown:
            raise EditRequestError(
                f"{name} does not know the params {unknown}; it takes {sorted(self.common_params + self.extra_params)}",
                shot=shot,
            )
        if not isinstance(context.instruction, str) or not context.instruction.strip():
            raise EditRequestError(f"{name} needs an instruction saying what to change", shot=shot)
        settings = self._settings_for(context)
        offload = params.get("offload", settings.model_offload)
        if not isinstance(offload, bool):
            raise EditRequestError(f"{name} param offload must be true or false, got {offload!r}", shot=shot)
        return RunSettings(
            steps=number_param(params, "steps", self.default_steps, int, 1, 1000, name, shot),
            guidance_scale=number_param(params, "guidance_scale", self.default_guidance, float, 0.0, 100.0, name, shot),
            max_area=number_param(params, "max_area", self.default_area, int, 64, 4096 * 4096, name, shot),
            dtype=choice_param(params, "dtype", "auto", DTYPES, name, shot),
            offload=offload,
            device=settings.device,
            mask=choice_param(params, "mask", "difference", MASK_MODES, name, shot),
            mask_threshold=number_param(params, "mask_threshold", DEFAULT_MASK_THRESHOLD, float, 0.0, 1.0, name, shot),
            extra=tuple(sorted(self._parse_extra(params, shot).items())),
        )

    def _parse_extra(self, params: Mapping[str, Any], shot: str) -> dict[str, Any]:
        return {}

    def _model_dir(self, context: EditContext) -> Path:
        env = f"STUDIO_NOVA_{self.setting.upper()}"
        given = (context.params or {}).get("model_dir")
        if given is not None and (not isinstance(given, str) or not given.strip()):
            raise EditRequestError(
                f"{self.name} param model_dir must be a folder path, got {given!r}", shot=context.shot
            )
        configured = given or getattr(self._settings_for(context), self.setting)
        source = "params model_dir" if given else env
        if not configured:
            raise ConfigError(
                f"{self.name} needs the {self.what} weights: set {env} (or params model_dir) to a local "
                f"folder in diffusers layout: {layout_text(self.parts)}. Nothing is downloaded.",
                shot=context.shot,
                setting=env,
            )
        folder = Path(configured).expanduser()
        missing = ["the folder itself"] if not folder.is_dir() else missing_parts(folder, self.parts)
        if missing:
            raise ConfigError(
                f"{source} points at {folder}, which lacks {', '.join(missing)}; {self.name} expects "
                f"the {self.what} weights in diffusers layout: {layout_text(self.parts)}. Nothing is downloaded.",
                shot=context.shot,
                path=folder,
                setting=env,
            )
        return folder.resolve()

    # 3. Pipeline ----------------------------------------------------------------------------------

    def _pipeline(self, folder: Path, run: RunSettings, shot: str) -> Any:
        device = resolve_device(run.device)
        key = (str(folder), device, run.dtype, run.offload)
        if self._pipe is not None and self._pipe_key == key:
            return self._pipe
        if run.offload and not device.startswith("cuda"):
            raise ConfigError(f"{self.name}: CPU offload needs a CUDA device, but the device is {device}", shot=shot)
        if run.offload and importlib.util.find_spec("accelerate") is None:
            raise ConfigError(
                f"{self.name}: CPU offload (STUDIO_NOVA_MODEL_OFFLOAD / params offload) needs the accelerate "
                "package: pip install accelerate",
                shot=shot,
            )
        dtype = resolve_dtype(run.dtype, device)
        try:
            pipe = self._load(folder, dtype)
        except StudioNovaError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.name} could not load the {self.what} weights from {folder}: {type(exc).__name__}: {exc}",
                shot=shot,
                path=folder,
                setting=f"STUDIO_NOVA_{self.setting.upper()}",
            ) from exc
        if run.offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self._pipe, self._pipe_key = pipe, key
        return pipe

    def _multiple(self, pipe: Any) -> int:
        """The working size's grid: VAE downscale × the transformer's 2×2 latent packing."""
        return int(pipe.vae_scale_factor) * 2

    def _load(self, folder: Path, dtype: Any) -> Any:
        raise NotImplementedError

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
        """The model's edit of `keyframe` (float H×W×3 at `size`), given `reference` or None."""
        raise NotImplementedError

    # 4. What was used ---------------------------------------------------------------------------

    def _info(
        self, context: EditContext, folder: Path | None, run: RunSettings | None, given_reference: bool
    ) -> dict[str, Any]:
        return {
            "editor": self.name,
            "model": str(folder) if folder is not None else None,
            "seed": int(context.seed),
            "settings": run.to_dict() if run is not None else {},
            "instruction": context.instruction,
            "region": context.region is not None,
            "reference": "given" if given_reference else "first edited keyframe",
        }
