"""`recolor`: a deterministic colour edit inside a soft colour key, no model weights.

It is the embedded default editor: it runs anywhere, in milliseconds, and because it is a pure
function of the pixels, the demo and the tests can apply it to *every* frame of a shot and get
the ground truth that propagation from a few keyframes must reproduce.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from studio_nova.errors import EditRequestError, KeyframeError
from studio_nova.plugin_api.editing import EditContext, EditedKeyframe, EditResult

# Hue of each colour name an instruction may use, in degrees on the HSV wheel.
NAMED_HUES: dict[str, float] = {
    "red": 0.0,
    "orange": 30.0,
    "yellow": 60.0,
    "lime": 90.0,
    "green": 120.0,
    "turquoise": 175.0,
    "cyan": 180.0,
    "teal": 180.0,
    "azure": 210.0,
    "blue": 240.0,
    "violet": 270.0,
    "purple": 285.0,
    "magenta": 300.0,
    "pink": 330.0,
}
_GREYS = ("grey", "gray")
# Colours without a hue: a hue key cannot find them and a hue shift cannot make them.
_ACHROMATIC = ("black", "white", "brown", "silver", "gold", "beige")

DEFAULT_KEY_WIDTH = 40.0
DEFAULT_KEY_SOFTNESS = 15.0
DEFAULT_MIN_SATURATION = 0.2
# Saturation over which the key fades in above `min_saturation`: a hard saturation edge would
# make pixels near the threshold flicker in and out of the key from frame to frame.
SATURATION_RAMP = 0.1

_OPERATIONS = ("hue_shift", "saturation", "gain", "lift", "gamma")
_PARAM_NAMES = ("key", *_OPERATIONS)
_KEY_FIELDS = ("hue", "width", "min_saturation", "softness")

UNDERSTOOD = (
    "params: key {hue, width, min_saturation, softness} or null, hue_shift, saturation, gain, "
    "lift, gamma; instructions: 'red to blue', 'make the red car green', 'make the red car grey', "
    "'black and white', 'desaturate the blue sky', 'brighter', 'make the green wall darker', "
    f"with colours {', '.join(NAMED_HUES)}, grey"
)

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class ColorKey:
    """A soft hue key: full weight within ±width/2 of `hue`, fading to 0 over `softness` more."""

    hue: float
    width: float = DEFAULT_KEY_WIDTH
    min_saturation: float = DEFAULT_MIN_SATURATION
    softness: float = DEFAULT_KEY_SOFTNESS


@dataclass(frozen=True)
class RecolorSpec:
    """A validated recolor request: where (key) and what (the grade)."""

    key: ColorKey | None = None
    hue_shift: float = 0.0
    saturation: float = 1.0
    gain: RGB = (1.0, 1.0, 1.0)
    lift: RGB = (0.0, 0.0, 0.0)
    gamma: RGB = (1.0, 1.0, 1.0)

    def to_params(self) -> dict[str, Any]:
        """The spec as editor params (JSON-able), for the store and for reproducing the edit."""
        out = asdict(self)
        out["gain"], out["lift"], out["gamma"] = list(self.gain), list(self.lift), list(self.gamma)
        return out


class RecolorEditor:
    """Recolour keyframes inside a colour key (or grade them globally); deterministic.

    Params (all optional; an edit request must give at least one operation, here or through
    the instruction):

    - ``key``: ``{"hue": degrees or colour name, "width": degrees (default 40),
      "min_saturation": 0..1 (default 0.2), "softness": degrees (default 15)}`` or ``null``.
      Pixels whose hue is within ``width/2`` of ``hue`` are fully keyed; the key falls smoothly
      to 0 over the next ``softness`` degrees. Pixels at or below ``min_saturation`` are never
      keyed (their hue means nothing) and the key fades in over the next 0.1 of saturation.
      ``null`` or absent: a global grade, every pixel is edited.
    - ``hue_shift``: degrees added to the hue of keyed pixels.
    - ``saturation``: multiplier of HSV saturation (0 = grey).
    - ``lift``: number or ``[r, g, b]`` in [-1, 1]; ``x + lift * (1 - x)`` raises the blacks.
    - ``gamma``: number or ``[r, g, b]`` > 0; ``x ** (1 / gamma)``, above 1 brightens mid-tones.
    - ``gain``: number or ``[r, g, b]`` >= 0; multiplies the result.

    When params hold no operation, the instruction is read instead: "red to blue" and "make
    the red car green" key the first colour and shift it to the second; "... grey"
    desaturates; "black and white", "desaturate", "brighter", "darker" work with or without a
    colour to key. A ``key`` in params overrides the key an instruction names. The output is
    ``original + mask * (edited - original)``, and the returned mask is the key (all ones for
    a global grade) times ``context.region`` when one is given. The seed is recorded only:
    nothing here is random.
    """

    name = "recolor"

    @staticmethod
    def check_params(params: Mapping[str, Any], *, instruction: str = "", settings: Any = None, **_: Any) -> None:
        """Refuse params (or, without an operation in them, an instruction) `edit` would refuse."""
        resolve_spec(params, instruction)

    def edit(self, context: EditContext) -> EditResult:
        # 1. Work out what to do, from params or else from the instruction.
        spec, source = resolve_spec(context.params, context.instruction, shot=context.shot)
        # 2. Edit every keyframe with the same spec, so they all share one look.
        edited = []
        for keyframe in context.keyframes:
            image = _check_keyframe(keyframe.image, context.shot, keyframe.source_frame)
            region = _check_region(context.region, image.shape[:2], context.shot)
            out, mask = apply_recolor(image, spec, region=region)
            edited.append(EditedKeyframe(keyframe.source_frame, out, mask))
        # 3. Record how, so the store can reproduce and a reviewer can read it.
        info = {
            "editor": self.name,
            "model": None,  # a pure function of the pixels: no weights
            "settings": {"params": spec.to_params(), "from": source},
            "params": spec.to_params(),
            "from": source,
            "instruction": context.instruction,
            "seed": context.seed,
            "region": context.region is not None,
        }
        return EditResult(keyframes=edited, info=info)


# --- the pure edit -------------------------------------------------------------------------------


def recolor_image(
    image: np.ndarray,
    params: Mapping[str, Any] | RecolorSpec,
    *,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a recolor (editor params or a spec) to one float RGB image: (edited, mask).

    The same function the editor uses on keyframes, exposed so a ground truth can be built for
    every frame of a shot.
    """
    spec = params if isinstance(params, RecolorSpec) else parse_params(params)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image must be float RGB H×W×3, got {image.dtype} {image.shape}")
    if region is not None:
        region = _region_array(region, image.shape[:2])
    return apply_recolor(image.astype(np.float32, copy=False), spec, region=region)


def apply_recolor(
    image: np.ndarray, spec: RecolorSpec, *, region: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The edit itself, on checked inputs (float32 H×W×3 in [0, 1], region H×W or None)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360), S and V in [0, 1]
    if spec.key is None:
        mask = np.ones(image.shape[:2], np.float32)
    else:
        mask = key_mask(hsv, spec.key)
    if region is not None:
        mask = mask * region.astype(np.float32)
    graded = _grade(image, hsv, spec)
    out = image + mask[:, :, None] * (graded - image)
    # Exactly the original where the mask is 0, not merely close: untouched pixels must stay
    # bit-exact all the way to the render.
    out = np.where(mask[:, :, None] > 0, np.clip(out, 0.0, 1.0), image)
    return out.astype(np.float32, copy=False), mask.astype(np.float32, copy=False)


def key_mask(hsv: np.ndarray, key: ColorKey) -> np.ndarray:
    """Soft key weight in [0, 1] of every pixel of a float HSV image (H in degrees)."""
    distance = np.abs((hsv[:, :, 0] - key.hue + 180.0) % 360.0 - 180.0)
    half = key.width / 2.0
    if key.softness > 0:
        hue_weight = 1.0 - _smoothstep((distance - half) / key.softness)
    else:
        hue_weight = (distance <= half).astype(np.float32)
    sat_weight = _smoothstep((hsv[:, :, 1] - key.min_saturation) / SATURATION_RAMP)
    return (hue_weight * sat_weight).astype(np.float32)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """0 at t <= 0, 1 at t >= 1, C1-smooth between: a falloff without a visible edge."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _grade(image: np.ndarray, hsv: np.ndarray, spec: RecolorSpec) -> np.ndarray:
    if spec.hue_shift % 360.0 != 0.0 or spec.saturation != 1.0:
        shifted = hsv.copy()
        shifted[:, :, 0] = (shifted[:, :, 0] + spec.hue_shift) % 360.0
        shifted[:, :, 1] = np.clip(shifted[:, :, 1] * spec.saturation, 0.0, 1.0)
        rgb = cv2.cvtColor(shifted, cv2.COLOR_HSV2RGB)
    else:
        rgb = image.copy()
    lift = np.asarray(spec.lift, np.float32)
    gamma = np.asarray(spec.gamma, np.float32)
    gain = np.asarray(spec.gain, np.float32)
    rgb = np.clip(rgb + lift * (1.0 - rgb), 0.0, 1.0)
    rgb = np.power(rgb, 1.0 / gamma)
    return np.clip(rgb * gain, 0.0, 1.0).astype(np.float32)


# --- params and instructions ---------------------------------------------------------------------


def resolve_spec(
    params: Mapping[str, Any], instruction: str, *, shot: str | None = None
) -> tuple[RecolorSpec, str]:
    """The spec of an edit request and where it came from ("params" or "instruction")."""
    params = dict(params or {})
    if any(name in params for name in _OPERATIONS) or set(params) - set(_PARAM_NAMES):
        return parse_params(params, shot=shot), "params"  # refuses unknown params (a typo) too
    parsed = parse_instruction(instruction or "", shot=shot)
    if parsed is None:
        raise EditRequestError(
            f"recolor does not know what to do: params {params!r} give no operation and the "
            f"instruction {instruction!r} names none it understands. Understood: {UNDERSTOOD}",
            shot=shot,
        )
    if "key" in params:
        parsed["key"] = params["key"]
    return parse_params(parsed, shot=shot), "instruction"


def parse_params(params: Mapping[str, Any], *, shot: str | None = None) -> RecolorSpec:
    """Validate editor params into a spec; anything unknown or out of range is an error."""
    if not isinstance(params, Mapping):
        raise EditRequestError(f"recolor params must be a mapping, got {params!r}", shot=shot)
    unknown = sorted(set(params) - set(_PARAM_NAMES))
    if unknown:
        raise EditRequestError(
            f"recolor does not know the params {unknown}; it takes {list(_PARAM_NAMES)}",
            shot=shot,
        )
    try:
        return RecolorSpec(
            key=_parse_key(params.get("key")),
            hue_shift=_number(params.get("hue_shift", 0.0), "hue_shift"),
            saturation=_number(params.get("saturation", 1.0), "saturation", low=0.0),
            gain=_rgb(params.get("gain", 1.0), "gain", low=0.0),
            lift=_rgb(params.get("lift", 0.0), "lift", low=-1.0, high=1.0),
            gamma=_rgb(params.get("gamma", 1.0), "gamma", low=0.0, low_open=True),
        )
    except ValueError as exc:
        raise EditRequestError(f"recolor params: {exc}", shot=shot) from exc


def _parse_key(value: Any) -> ColorKey | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"key must be a mapping {list(_KEY_FIELDS)} or null, got {value!r}")
    unknown = sorted(set(value) - set(_KEY_FIELDS))
    if unknown:
        raise ValueError(f"key does not know the fields {unknown}; it takes {list(_KEY_FIELDS)}")
    if "hue" not in value:
        raise ValueError(f"key needs a hue (degrees or one of {list(NAMED_HUES)}), got {value!r}")
    hue = value["hue"]
    if isinstance(hue, str):
        if hue.lower() not in NAMED_HUES:
            raise ValueError(f"key hue {hue!r} is not a colour name; use degrees or {list(NAMED_HUES)}")
        hue = NAMED_HUES[hue.lower()]
    return ColorKey(
        hue=_number(hue, "key.hue") % 360.0,
        width=_number(value.get("width", DEFAULT_KEY_WIDTH), "key.width", low=0.0, high=360.0, low_open=True),
        min_saturation=_number(
            value.get("min_saturation", DEFAULT_MIN_SATURATION), "key.min_saturation", low=0.0, high=1.0
        ),
        softness=_number(value.get("softness", DEFAULT_KEY_SOFTNESS), "key.softness", low=0.0, high=180.0),
    )


def _number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def _rgb(value: Any, name: str, **limits: Any) -> RGB:
    """A number applies to all three channels; a list gives one per channel."""
    if isinstance(value, (list, tuple)):
        if len(value) != 3:
            raise ValueError(f"{name} must be a number or [r, g, b], got {list(value)!r}")
        r, g, b = (_number(v, f"{name}[{i}]", **limits) for i, v in enumerate(value))
        return (r, g, b)
    number = _number(value, name, **limits)
    return (number, number, number)


def parse_instruction(instruction: str, *, shot: str | None = None) -> dict[str, Any] | None:
    """Editor params for a plain-language instruction, or None when it names no operation.

    Raises when the instruction clearly asks for something this editor cannot do (three
    colours, a colour without hue), rather than guessing.
    """
    text = instruction.lower()
    params: dict[str, Any] = {}
    # Phrases first: "black and white" names two achromatic colours but means desaturate.
    text, desaturate = re.subn(
        r"\b(black\s*(and|&)\s*white|b&w|gr[ae]yscale|monochrome|desaturated?)\b", " ", text
    )
    brighter = re.search(r"\b(brighter|lighter|brighten)\b", text) is not None
    darker = re.search(r"\b(darker|darken)\b", text) is not None
    if brighter and darker:
        raise EditRequestError(f"instruction {instruction!r} asks for both brighter and darker", shot=shot)

    names = "|".join((*NAMED_HUES, *_GREYS, *_ACHROMATIC))
    colours = re.findall(rf"\b({names})s?\b", text)  # "reds" too
    achromatic = [c for c in colours if c in _ACHROMATIC]
    if achromatic:
        raise EditRequestError(
            f"instruction {instruction!r} names {achromatic}, which have no hue to key or shift to; "
            f"use gain/lift/gamma params instead. Understood: {UNDERSTOOD}",
            shot=shot,
        )
    if len(colours) > 2:
        raise EditRequestError(
            f"instruction {instruction!r} names {len(colours)} colours {colours}; "
            "say 'SOURCE to TARGET' with one of each",
            shot=shot,
        )
    if colours and colours[0] in _GREYS:
        raise EditRequestError(
            f"instruction {instruction!r}: grey has no hue to key; name a colour to change",
            shot=shot,
        )
    if len(colours) == 2:
        source, target = colours
        if target in _GREYS:
            desaturate = 1
        else:
            params["hue_shift"] = (NAMED_HUES[target] - NAMED_HUES[source] + 180.0) % 360.0 - 180.0
    if colours:
        params["key"] = {"hue": NAMED_HUES[colours[0]]}
    if desaturate:
        params["saturation"] = 0.0
    if brighter:
        params["gain"] = 1.25
    if darker:
        params["gain"] = 0.8
    if not any(name in params for name in _OPERATIONS):
        return None
    return params


# --- input checks --------------------------------------------------------------------------------


def _check_keyframe(image: np.ndarray, shot: str, frame: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or not np.issubdtype(image.dtype, np.floating):
        raise KeyframeError(
            f"keyframe must be float RGB H×W×3, got {image.dtype} {image.shape}", shot=shot, frame=frame
        )
    return image.astype(np.float32, copy=False)


def _check_region(region: np.ndarray | None, size: tuple[int, int], shot: str) -> np.ndarray | None:
    if region is None:
        return None
    try:
        return _region_array(region, size)
    except ValueError as exc:
        raise EditRequestError(str(exc), shot=shot) from exc


def _region_array(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    region = np.asarray(region, dtype=np.float32)
    if region.shape != tuple(size):
        raise ValueError(f"region mask is {region.shape[::-1]} (W×H) but the keyframes are {size[::-1]}")
    if not np.all(np.isfinite(region)) or region.min() < 0.0 or region.max() > 1.0:
        raise ValueError("region mask must hold values in [0, 1]")
    return region
