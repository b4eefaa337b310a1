"""The conformance suite every keyframe editor runs against itself (docs/editors.md).

A third party calls it from its own pytest::

    from studio_nova.testing import run_editor_conformance

    def test_my_editor_conforms():
        run_editor_conformance(MyEditor, instruction="make the red car blue")

Each check raises `ConformanceError` (an AssertionError, so pytest shows it as a failure) whose
message says which rule of the contract was broken and where. The suite edits a small synthetic
shot — a red "car" moving over a green-grey background, quantised to 8 bits — unless the caller
gives its own keyframes (an editor that reads files, like `artist`, prepares them first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from studio_nova.errors import StudioNovaError
from studio_nova.media.frames import to_float
from studio_nova.plugin_api.editing import EditContext, EditResult, Keyframe, ShotSource

HEIGHT, WIDTH = 40, 56
CAR_WIDTH, CAR_HEIGHT, CAR_STEP = 14, 10, 3
# The default region: full weight on columns [0, REGION_FULL), a ramp to 0 at REGION_END.
REGION_FULL, REGION_END = 28, 34


class ConformanceError(AssertionError):
    """An editor broke a rule of the editor contract."""


@dataclass
class ConformanceReport:
    """What was checked, for a test to print or assert on."""

    editor: str
    checks: list[str] = field(default_factory=list)
    runs: int = 0


def conformance_keyframes(
    count: int = 2, *, height: int = HEIGHT, width: int = WIDTH, first_frame: int = 100, interval: int = 10
) -> list[Keyframe]:
    """The suite's synthetic keyframes: exact 8-bit values, a red car moving right."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if height < 16 or width < 2 * CAR_WIDTH:
        raise ValueError(f"keyframes must be at least {2 * CAR_WIDTH}×16, got {width}×{height}")
    ys, xs = np.mgrid[0:height, 0:width]
    keyframes = []
    for i in range(count):
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = 90 + (xs * 60 // width)
        frame[..., 1] = 120 + (ys * 50 // height)
        frame[..., 2] = 80 + ((xs + ys) % 7) * 5
        x0, y0 = 4 + CAR_STEP * i, height // 2 - CAR_HEIGHT // 2
        frame[y0 : y0 + CAR_HEIGHT, x0 : x0 + CAR_WIDTH] = (210, 25, 30)
        keyframes.append(Keyframe(first_frame + i * interval, to_float(frame)))
    return keyframes


def conformance_region(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A soft region covering the left half: 1, then a ramp, then exactly 0."""
    full, end = min(REGION_FULL, width // 2), min(REGION_END, width - 1)
    region = np.zeros((height, width), np.float32)
    region[:, :full] = 1.0
    region[:, full:end] = np.linspace(1.0, 0.0, end - full + 2, dtype=np.float32)[1:-1]
    return region


def run_editor_conformance(
    editor_factory: Callable[[], Any],
    *,
    instruction: str = "make the red car blue",
    params: Mapping[str, Any] | None = None,
    keyframes: Sequence[Keyframe] | None = None,
    region: np.ndarray | None = None,
    seed: int = 1234,
    bad_params: Sequence[Mapping[str, Any]] = (),
    expect_change: bool = True,
    check_reference: bool = True,
    shot: str = "conformance",
    source: ShotSource | None = None,
) -> ConformanceReport:
    """Check that the editors `editor_factory()` makes follow the editor contract.

    `params`/`instruction` must make a real edit of the keyframes (`expect_change`: something
    changes, also inside the region); `bad_params` are param sets the editor must refuse with a
    StudioNovaError. The factory is called again for the determinism check, so a fresh instance
    (a new process, in effect) must give the same keyframes for the same seed. `source`: the
    shot's media, for editors that read more than the keyframes (`background`); the keyframes
    must then be that media's frames.
    """
    keyframes = list(keyframes) if keyframes is not None else conformance_keyframes()
    if not keyframes:
        raise ValueError("keyframes must hold at least one keyframe")
    size = np.shape(keyframes[0].image)[:2]
    region = conformance_region(*size) if region is None else np.asarray(region, np.float32)
    params = dict(params or {})
    originals = [np.array(k.image, copy=True) for k in keyframes]

    editor = editor_factory()
    name = getattr(editor, "name", None)
    report = ConformanceReport(editor=str(name))
    _require(isinstance(name, str) and name, "the editor has a non-empty str `name`", report)
    _require(callable(getattr(editor, "edit", None)), "the editor has an `edit(context)` method", report)

    def context(**changes: Any) -> EditContext:
        base = dict(shot=shot, keyframes=keyframes, instruction=instruction, params=params, seed=seed, source=source)
        base.update(changes)
        return EditContext(**base)

    def run(an_editor: Any, ctx: EditContext, label: str) -> EditResult:
        report.runs += 1
        try:
            return an_editor.edit(ctx)
        except StudioNovaError as exc:
            raise ConformanceError(f"{name}: the {label} edit failed: {type(exc).__name__}: {exc}") from exc

    # 1. A plain edit: one keyframe and mask per input keyframe, in order, the right size and type.
    plain = run(editor, context(), "plain")
    _check_result(plain, keyframes, name, "plain", report)
    for original, keyframe in zip(originals, keyframes):
        _require(np.array_equal(original, keyframe.image), "the editor leaves the input keyframes unmodified", report)
    if expect_change:
        changed = any(not np.array_equal(k.image, o) for k, o in zip(plain.keyframes, originals))
        _require(changed, "the edit changes at least one keyframe (else the other checks prove nothing)", report)
    _check_info(plain, name, seed, report)

    # 2. The same seed, a fresh editor: the same keyframes, bit for bit.
    again = run(editor_factory(), context(), "repeated")
    for first, second in zip(plain.keyframes, again.keyframes):
        same = np.array_equal(first.image, second.image) and np.array_equal(first.mask, second.mask)
        _require(same, f"the same seed gives the same keyframe (frame {first.source_frame} differs)", report)

    # 3. A region confines the edit: outside it the original pixels, exactly, and mask 0.
    confined = run(editor, context(region=region), "region")
    _check_result(confined, keyframes, name, "region", report)
    outside = region == 0
    for edited, original in zip(confined.keyframes, originals):
        frame = edited.source_frame
        kept = np.array_equal(edited.image[outside], original[outside])
        _require(kept, f"pixels outside the region are the original ones (frame {frame})", report)
        _require(np.all(edited.mask[outside] == 0), f"the mask is 0 outside the region (frame {frame})", report)
    if expect_change:
        inside = any(
            not np.array_equal(e.image[~outside], o[~outside]) for e, o in zip(confined.keyframes, originals)
        )
        _require(inside, "with a region, the edit still changes something inside it", report)

    # 4. A reference image (the look to share) is accepted and the contract still holds.
    if check_reference:
        referenced = run(editor, context(reference=plain.keyframes[0].image), "reference")
        _check_result(referenced, keyframes, name, "reference", report)

    # 5. Bad requests are refused with a StudioNovaError, before any harm.
    wrong_region = np.ones((size[0] + 1, size[1]), np.float32)
    _check_refused(editor, context(region=wrong_region), "a region of the wrong size", name, report)
    for bad in bad_params:
        _check_refused(editor, context(params=dict(bad)), f"params {dict(bad)!r}", name, report)
    return report


def _require(condition: Any, rule: str, report: ConformanceReport) -> None:
    if not condition:
        raise ConformanceError(f"{report.editor}: contract broken: {rule}")
    if rule not in report.checks:
        report.checks.append(rule)


def _check_result(
    result: Any, keyframes: Sequence[Keyframe], name: str, label: str, report: ConformanceReport
) -> None:
    _require(isinstance(result, EditResult), f"edit() returns an EditResult ({label} edit)", report)
    got = [k.source_frame for k in result.keyframes]
    want = [k.source_frame for k in keyframes]
    _require(got == want, f"one edited keyframe per input keyframe, in order ({label} edit: {got} for {want})", report)
    for edited, original in zip(result.keyframes, keyframes):
        frame, shape = edited.source_frame, np.shape(original.image)
        image, mask = np.asarray(edited.image), np.asarray(edited.mask)
        where = f"{label} edit, frame {frame}"
        _require(
            image.shape == shape and image.dtype == np.float32,
            f"images are float32 {shape} ({where}: {image.dtype} {image.shape})",
            report,
        )
        _require(_in_unit_range(image), f"image values are in [0, 1] ({where})", report)
        _require(
            mask.shape == shape[:2] and mask.dtype == np.float32,
            f"masks are float32 {shape[:2]} ({where}: {mask.dtype} {mask.shape})",
            report,
        )
        _require(_in_unit_range(mask), f"mask values are in [0, 1] ({where})", report)
        changed = np.any(image != np.asarray(original.image), axis=2)
        _require(np.all(mask[changed] > 0), f"every changed pixel has mask > 0 ({where})", report)


def _in_unit_range(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 1)


def _check_info(result: EditResult, name: str, seed: int, report: ConformanceReport) -> None:
    info = result.info
    _require(isinstance(info, dict), "info is a dict", report)
    try:
        json.dumps(info)
    except (TypeError, ValueError) as exc:
        raise ConformanceError(f"{name}: contract broken: info is JSON-serialisable ({exc})") from exc
    _require(info.get("editor") == name, f"info['editor'] is the editor's name (got {info.get('editor')!r})", report)
    _require(info.get("seed") == seed, f"info['seed'] is the seed used (got {info.get('seed')!r}, want {seed})", report)
    model_ok = "model" in info and (info["model"] is None or isinstance(info["model"], str))
    _require(model_ok, "info['model'] names the model (None when there is none)", report)
    _require(isinstance(info.get("settings"), dict), "info['settings'] is a dict of the settings used", report)


def _check_refused(editor: Any, ctx: EditContext, what: str, name: str, report: ConformanceReport) -> None:
    report.runs += 1
    try:
        editor.edit(ctx)
    except StudioNovaError:
        _require(True, f"{what} is refused with a StudioNovaError", report)
        return
    except Exception as exc:
        raise ConformanceError(
            f"{name}: contract broken: {what} must raise a StudioNovaError subclass, got {type(exc).__name__}: {exc}"
        ) from exc
    raise ConformanceError(
        f"{name}: contract broken: {what} must be refused with a StudioNovaError, but the edit went on"
    )
