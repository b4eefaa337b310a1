"""`generator`: a moving background made by models — text-to-image, then Wan image-to-video.

Made once per shot and request, then served like a plate. The steps:

1. a still: the ``image`` param if given, else text-to-image from the prompt with the pipeline
   in ``t2i_dir`` (diffusers layout; `AutoPipelineForText2Image`, or the folder's own pipeline
   class when the auto mapping does not know it);
2. the still animated into a clip of ``frames`` frames by `WanImageToVideoPipeline` from
   ``i2v_dir`` (Wan 2.1 / 2.2 image-to-video in diffusers layout);
3. the clip written losslessly (FFV1, 16-bit RGB, 16 fps — Wan's rate) under the shot's cache
   folder, named by a hash of everything that decides its pixels (prompt, negative prompt, seed,
   size, frames, steps, guidance, model folders, the image's content, dtype), under a temporary
   name and published complete, so every chunk and every rerun of the shot reuses it — also on
   another worker — and the models are never loaded again for it;
4. served by the `plate` source: ``loop`` (default ``pingpong``) for shots longer than the clip,
   ``retime``, ``fit`` / ``anchor`` / ``fill`` to the source frame.

Weights are read from local folders only (``local_files_only=True``; a folder that does not exist
is an error, never a hub id): ``STUDIO_NOVA_BACKGROUND_T2I_DIR`` / ``STUDIO_NOVA_BACKGROUND_I2V_DIR``
or the params ``t2i_dir`` / ``i2v_dir``.

Params: ``prompt`` (default: the edit's instruction), ``negative_prompt``, ``seed`` (default: the
edit's seed), ``t2i_dir``, ``i2v_dir``, ``image`` (animate this still, no text-to-image),
``frames`` (4n+1, default 81), ``steps`` (default 50) and ``guidance`` (default 5.0) of the
image-to-video model, ``t2i_steps`` / ``t2i_guidance`` (default: the text-to-image pipeline's
own), ``height`` / ``width`` (generation size, multiples of 16; default 480×832, or 832×480 for a
portrait shot), ``loop``, ``retime``, ``fit``, ``anchor``, ``fill`` (as for ``plate``),
``device`` (default the ``device`` setting), ``dtype`` (auto|bf16|fp16|fp32), ``offload``
(default the ``model_offload`` setting).
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from studio_nova.atomic import write_bytes
from studio_nova.config import Settings
from studio_nova.errors import ConfigError, EditRequestError, EncodeError, PluginError, StudioNovaError
from studio_nova.plugin_api.backgrounds import BackgroundContext
from studio_nova_plugins.backgrounds._common import (
    LOOPS,
    RETIMES,
    Framing,
    apply_static,
    bad_param,
    choice_param,
    int_param,
    number_param,
    path_param,
    read_still,
    reject_unknown,
    resolve_file,
    static_plan,
)
from studio_nova_plugins.backgrounds.plate import PlateBackground

WAN_RATE = Fraction(16)  # Wan 2.1 makes 16 frames per second
DEFAULT_SIZE = (480, 832)  # (height, width): Wan 2.1's 480p
DTYPES = ("auto", "bf16", "fp16", "fp32")
CACHE_VERSION = 1  # part of every cache key: bump when the way a clip is made changes
T2I_SETTING = "background_t2i_dir"
I2V_SETTING = "background_i2v_dir"
I2V_PARTS = {
    "transformer": "weights",
    "vae": "weights",
    "text_encoder": "weights",
    "tokenizer": "config:tokenizer_config.json|tokenizer.json|spiece.model",
    "scheduler": "config:scheduler_config.json",
}
T2I_PARTS: dict[str, str] = {}  # any diffusers text-to-image pipeline: model_index.json is enough


class GeneratedBackground:
    """A moving background generated from a prompt (or a still) by Wan image-to-video, made once per shot."""

    name = "generator"
    params = (
        "prompt", "negative_prompt", "seed", "t2i_dir", "i2v_dir", "image", "frames", "steps", "guidance",
        "t2i_steps", "t2i_guidance", "height", "width", "loop", "retime", "fit", "anchor", "fill", "device",
        "dtype", "offload",
    )  # fmt: skip

    def __init__(
        self,
        *,
        prompt: Any = None,
        negative_prompt: Any = None,
        seed: Any = None,
        t2i_dir: Any = None,
        i2v_dir: Any = None,
        image: Any = None,
        frames: Any = 81,
        steps: Any = 50,
        guidance: Any = 5.0,
        t2i_steps: Any = None,
        t2i_guidance: Any = None,
        height: Any = None,
        width: Any = None,
        loop: Any = "pingpong",
        retime: Any = "frame",
        fit: Any = "cover",
        anchor: Any = (0.5, 0.5),
        fill: Any = 0.0,
        device: Any = None,
        dtype: Any = "auto",
        offload: Any = None,
        **unknown: Any,
    ) -> None:
        name = self.name
        reject_unknown(name, unknown, self.params)
        self.prompt = _text(name, "prompt", prompt)
        self.negative_prompt = _text(name, "negative_prompt", negative_prompt)
        self.seed = None if seed is None else int_param(name, "seed", seed, 0, 2**63 - 1)
        self.t2i_dir = None if t2i_dir is None else path_param(name, "t2i_dir", t2i_dir)
        self.i2v_dir = None if i2v_dir is None else path_param(name, "i2v_dir", i2v_dir)
        self.image = None if image is None else path_param(name, "image", image)
        self.num_frames = int_param(name, "frames", frames, 5, 1025)
        if (self.num_frames - 1) % 4:
            raise bad_param(name, "frames", "4n+1 (Wan makes 1 + 4 × latent frames), e.g. 81", frames)
        self.steps = int_param(name, "steps", steps, 1, 1000)
        self.guidance = number_param(name, "guidance", guidance, 0.0, 100.0)
        self.t2i_steps = None if t2i_steps is None else int_param(name, "t2i_steps", t2i_steps, 1, 1000)
        self.t2i_guidance = (
            None if t2i_guidance is None else number_param(name, "t2i_guidance", t2i_guidance, 0.0, 100.0)
        )
        if (height is None) != (width is None):
            raise EditRequestError(
                f"{name} background params height and width go together; got only one", param="height"
            )
        self.size = None
        if height is not None:
            self.size = (_size(name, "height", height), _size(name, "width", width))
        self.loop = choice_param(name, "loop", loop, LOOPS)
        self.retime = choice_param(name, "retime", retime, RETIMES)
        self.framing = Framing.parse(name, fit, anchor, fill)
        if device is not None and (not isinstance(device, str) or not device.strip()):
            raise bad_param(name, "device", "auto, cpu, cuda or cuda:N", device)
        self.device = device
        self.dtype = choice_param(name, "dtype", dtype, DTYPES)
        if offload is not None and not isinstance(offload, bool):
            raise bad_param(name, "offload", "true or false", offload)
        self.offload = offload
        self._plate: tuple[str, PlateBackground] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def readiness(cls, settings: Settings) -> tuple[bool, str | None]:
        """Whether the configured folders hold the models (files only; nothing is loaded)."""
        from studio_nova_plugins.editors._model_editing import model_readiness

        if importlib.util.find_spec("ftfy") is None:
            return False, "needs ftfy (Wan's prompt cleaning): pip install ftfy"
        what, parts = _MODELS["i2v_dir"]
        ready, reason = model_readiness(getattr(settings, I2V_SETTING), I2V_SETTING, parts, what)
        if not ready:
            return False, reason
        what, parts = _MODELS["t2i_dir"]
        ready, reason = model_readiness(getattr(settings, T2I_SETTING), T2I_SETTING, parts, what)
        if not ready:
            return False, f"{reason} (needed unless params image gives the still to animate)"
        return True, None

    # 1. The contract ----------------------------------------------------------------------------

    def frames(self, context: BackgroundContext, offsets: Sequence[int]) -> np.ndarray:
        return self.plate(context).frames(context, offsets)

    def plate(self, context: BackgroundContext) -> PlateBackground:
        """The plate source over this shot's generated clip, generating it first if no cache has it."""
        spec = self._spec(context)
        # The image counts by its content, not where it lies; everything else by value.
        keyed = {k: v for k, v in spec.items() if k != "image"}
        key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:24]
        if self._plate is not None and self._plate[0] == key:
            return self._plate[1]
        folder = self._cache_folder(context)
        clip = folder / f"background-{key}.mkv"
        if not clip.is_file():
            self._generate(spec, context, clip)
        plate = PlateBackground(
            video=str(clip), loop=self.loop, retime=self.retime, fit=self.framing.fit,
            anchor=self.framing.anchor, fill=list(self.framing.fill),
        )  # fmt: skip
        self._plate = (key, plate)
        return plate

    # 2. What decides the pixels -----------------------------------------------------------------

    def _spec(self, context: BackgroundContext) -> dict[str, Any]:
        prompt = self.prompt if self.prompt is not None else context.instruction
        if not prompt or not prompt.strip():
            raise EditRequestError(
                f"{self.name} background needs a prompt: params prompt, or the edit's instruction",
                shot=context.shot,
                param="prompt",
            )
        image = (
            None if self.image is None else resolve_file(self.name, "image", self.image, context.base_dir, context.shot)
        )
        if self.size is not None:
            height, width = self.size
        else:
            height, width = DEFAULT_SIZE if context.width >= context.height else DEFAULT_SIZE[::-1]
        settings = context.settings
        i2v = self._folder(self.i2v_dir, I2V_SETTING, settings, context, "i2v_dir")
        t2i = None if image is not None else self._folder(self.t2i_dir, T2I_SETTING, settings, context, "t2i_dir")
        return {
            "version": CACHE_VERSION,
            "prompt": prompt,
            "negative_prompt": self.negative_prompt,
            "seed": int(self.seed if self.seed is not None else context.seed),
            "height": height,
            "width": width,
            "frames": self.num_frames,
            "steps": self.steps,
            "guidance": self.guidance,
            "t2i_dir": None if t2i is None else str(t2i),
            "t2i_steps": None if t2i is None else self.t2i_steps,
            "t2i_guidance": None if t2i is None else self.t2i_guidance,
            "i2v_dir": str(i2v),
            "image": None if image is None else str(image),
            "image_sha256": None if image is None else hashlib.sha256(image.read_bytes()).hexdigest(),
            "dtype": self.dtype,
        }

    def _folder(
        self, given: str | None, setting: str, settings: Settings, context: BackgroundContext, param: str
    ) -> Path:
        """The model folder a param or setting names (its contents are checked only to generate)."""
        configured = given or getattr(settings, setting)
        if not configured:
            what, parts = _MODELS[param]
            also = " or give params image to animate a still" if param == "t2i_dir" else ""
            raise ConfigError(
                f"{self.name} background needs {what} weights: set {_env(setting)} (or params {param}) to a local "
                f"folder in diffusers layout ({_layout(parts)}){also}. Nothing is downloaded.",
                shot=context.shot,
                setting=_env(setting),
            )
        folder = Path(configured).expanduser()
        if not folder.is_absolute() and given and context.base_dir is not None:
            folder = context.base_dir / folder
        return folder.resolve()

    def _check_folder(self, folder: Path, param: str, context: BackgroundContext) -> None:
        from studio_nova_plugins.editors._model_editing import missing_parts

        what, parts = _MODELS[param]
        missing = ["the folder itself"] if not folder.is_dir() else missing_parts(folder, parts)
        if missing:
            setting = I2V_SETTING if param == "i2v_dir" else T2I_SETTING
            source = f"params {param}" if getattr(self, param) else _env(setting)
            raise ConfigError(
                f"{source} points at {folder}, which lacks {', '.join(missing)}; the {self.name} background expects "
                f"{what} weights in diffusers layout ({_layout(parts)}). Nothing is downloaded.",
                shot=context.shot,
                path=folder,
                setting=_env(setting),
            )

    def _cache_folder(self, context: BackgroundContext) -> Path:
        if context.cache_dir is not None:
            folder = Path(context.cache_dir) / "backgrounds"
        else:  # no shot cache: keep the clip for this source's lifetime only
            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="studio-nova-background-")
            folder = Path(self._scratch.name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # 3. Making the clip ---------------------------------------------------------------------------

    def _generate(self, spec: dict[str, Any], context: BackgroundContext, clip: Path) -> None:
        # 1. Check the libraries and pick device / dtype.
        from studio_nova_plugins.editors._model_editing import resolve_device, resolve_dtype

        missing = [m for m in ("torch", "diffusers", "transformers", "ftfy") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"{self.name} background needs {', '.join(missing)}: pip install 'studio-nova[model]' ftfy",
                shot=context.shot,
            )
        settings = context.settings
        device = resolve_device(self.device or settings.device)
        dtype = resolve_dtype(self.dtype, device)
        offload = settings.model_offload if self.offload is None else self.offload
        if offload and not device.startswith("cuda"):
            raise ConfigError(
                f"{self.name} background: CPU offload needs a CUDA device, but the device is {device}",
                shot=context.shot,
            )
        self._check_folder(Path(spec["i2v_dir"]), "i2v_dir", context)
        if spec["t2i_dir"] is not None:
            self._check_folder(Path(spec["t2i_dir"]), "t2i_dir", context)
        height, width = spec["height"], spec["width"]
        # 2. The still: the given image, or text-to-image.
        if spec["image"] is not None:
            picture = read_still(Path(spec["image"]), self.name, context.shot)
            still = apply_static(picture, static_plan(Framing(), picture.shape[1], picture.shape[0], width, height))
        else:
            pipe = self._load("text-to-image", _load_t2i, Path(spec["t2i_dir"]), dtype, device, offload, context)
            options: dict[str, Any] = {}
            if spec["t2i_steps"] is not None:
                options["num_inference_steps"] = spec["t2i_steps"]
            if spec["t2i_guidance"] is not None:
                options["guidance_scale"] = spec["t2i_guidance"]
            result = self._run(
                "text-to-image", context, pipe, prompt=spec["prompt"], height=height, width=width,
                generator=_generator(spec["seed"]), output_type="np", **options,
            ).images  # fmt: skip
            del pipe
            still = _one_image(result, height, width, context)
            _free(device)
        # 3. Animate it.
        pipe = self._load("image-to-video", _load_i2v, Path(spec["i2v_dir"]), dtype, device, offload, context)
        video = self._run(
            "image-to-video", context, pipe, image=_to_pil(still), prompt=spec["prompt"],
            negative_prompt=spec["negative_prompt"], height=height, width=width, num_frames=spec["frames"],
            num_inference_steps=spec["steps"], guidance_scale=spec["guidance"], generator=_generator(spec["seed"]),
            output_type="np",
        ).frames  # fmt: skip
        del pipe
        _free(device)
        video = np.asarray(video, dtype=np.float32)
        video = video[0] if video.ndim == 5 else video
        if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] < 1:
            raise PluginError(
                f"{self.name} background: image-to-video returned {video.shape}, expected (N, H, W, 3)",
                shot=context.shot,
            )
        # 4. Publish the clip (and, for people, the still and what made it).
        _write_clip(video, clip, context)
        _write_side_files(clip, still, spec)

    def _load(
        self, what: str, loader: Any, folder: Path, dtype: Any, device: str, offload: bool, context: BackgroundContext
    ) -> Any:
        try:
            pipe = loader(folder, dtype)
        except StudioNovaError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{self.name} background could not load the {what} pipeline from {folder}: {type(exc).__name__}: {exc}",
                shot=context.shot,
                path=folder,
            ) from exc
        if offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _run(self, what: str, context: BackgroundContext, pipe: Any, **inputs: Any) -> Any:
        try:
            return pipe(**inputs)
        except StudioNovaError:
            raise
        except (RuntimeError, ValueError, TypeError) as exc:
            raise PluginError(
                f"{self.name} background: {what} failed: {type(exc).__name__}: {exc}", shot=context.shot
            ) from exc


# --- helpers ---------------------------------------------------------------------------------------


_MODELS = {
    "i2v_dir": ("Wan image-to-video (e.g. Wan2.1-I2V-14B-480P-Diffusers)", I2V_PARTS),
    "t2i_dir": ("text-to-image (e.g. FLUX.1-dev)", T2I_PARTS),
}


def _env(setting: str) -> str:
    return f"STUDIO_NOVA_{setting.upper()}"


def _layout(parts: dict[str, str]) -> str:
    from studio_nova_plugins.editors._model_editing import layout_text

    return layout_text(parts)


def _text(source: str, name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise bad_param(source, name, "text", value)
    return value


def _size(source: str, name: str, value: Any) -> int:
    size = int_param(source, name, value, 16, 4096)
    if size % 16:
        raise bad_param(source, name, "a multiple of 16 (Wan's VAE × patch grid)", value)
    return size


def _load_t2i(folder: Path, dtype: Any) -> Any:
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    try:
        return AutoPipelineForText2Image.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except ValueError as exc:
        if "AutoPipeline can't find a pipeline" not in str(exc):
            raise
        return DiffusionPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True)


def _load_i2v(folder: Path, dtype: Any) -> Any:
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True)


def _generator(seed: int) -> Any:
    import torch

    # A CPU generator gives the same noise on every device, so one seed means one clip.
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def _one_image(result: Any, height: int, width: int, context: BackgroundContext) -> np.ndarray:
    image = np.asarray(result[0] if isinstance(result, (list, tuple)) else result, dtype=np.float32)
    image = image[0] if image.ndim == 4 else image
    if image.ndim != 3 or image.shape[-1] != 3:
        raise PluginError(
            f"generator background: text-to-image returned {image.shape}, expected (H, W, 3)", shot=context.shot
        )
    if image.shape[:2] != (height, width):  # a pipeline that snaps the size to its own grid
        image = apply_static(image, static_plan(Framing(), image.shape[1], image.shape[0], width, height))
    return np.clip(image, 0.0, 1.0)


def _to_pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), mode="RGB")


def _write_clip(video: np.ndarray, clip: Path, context: BackgroundContext) -> None:
    from studio_nova.media.encode import VideoWriter

    frames = np.clip(np.rint(np.clip(video, 0.0, 1.0) * 65535.0), 0, 65535).astype(np.uint16)
    height, width = frames.shape[1:3]
    try:
        with VideoWriter(
            clip, width=width, height=height, rate=WAN_RATE, codec="ffv1", input_dtype=np.uint16
        ) as writer:
            for frame in frames:
                writer.write(frame)
    except EncodeError:
        if clip.is_file():  # another worker published the same clip first: it is the same clip
            return
        raise


def _write_side_files(clip: Path, still: np.ndarray, spec: dict[str, Any]) -> None:
    """The still that was animated (PNG) and what made the clip (JSON), next to it, atomically."""
    import cv2

    png = cv2.imencode(
        ".png", cv2.cvtColor(np.clip(np.rint(still * 65535.0), 0, 65535).astype(np.uint16), cv2.COLOR_RGB2BGR)
    )[1]
    for path, data in (
        (clip.with_suffix(".png"), png.tobytes()),
        (clip.with_suffix(".json"), json.dumps(spec, indent=2, sort_keys=True).encode()),
    ):
        write_bytes(path, data)
