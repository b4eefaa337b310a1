"""`artist`: keyframes painted by a person, read back from a folder of PNGs.

The pipeline exports the original keyframes (`{source_frame:06d}.png`); an artist paints over
them in any tool and saves them under the same names. This editor reads them back and works
out, per keyframe, where the artist changed the image, so propagation carries exactly those
changes and leaves the rest of the frame untouched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from studio_nova.errors import EditRequestError, KeyframeError
from studio_nova.media.frames import from_float, to_float
from studio_nova.media.keyframe_files import decode_png_samples, keyframe_filename
from studio_nova.plugin_api.editing import EditContext, EditedKeyframe, EditResult, Keyframe

DEFAULT_FEATHER = 2
MAX_FEATHER = 64
# Connected changed areas smaller than this (pixels) get no feathered halo: single changed
# pixels are usually a tool's dithering or a stray click, not a stroke to blend in.
MIN_REGION_AREA = 4
_PARAM_NAMES = ("dir", "tolerance", "feather")


class ArtistEditor:
    """Read painted keyframes from ``params["dir"]``, one ``{source_frame:06d}.png`` each.

    Params:

    - ``dir`` (required): the folder holding the painted keyframes; a relative path is taken
      from the current directory. Files may be 8- or 16-bit, grey, RGB or RGBA (alpha is
      ignored), and must have the source frame's size.
    - ``tolerance`` (default 0): how many code values (at the file's own bit depth) a channel
      may move and still count as untouched; raise it to 1 for tools that dither or truncate
      when they convert depth.
    - ``feather`` (default 2): pixels over which the mask fades to 0 *outside* the painted
      area; every changed pixel keeps mask 1.

    Every keyframe file must exist: if any is missing, one error lists them all, so the artist
    knows the whole remaining job. The mask is computed against the original keyframe at the
    file's quantisation, so a pixel the artist left as exported gives exactly 0. With
    ``context.region``, paint outside the region is discarded (the original pixels are kept and
    the mask is multiplied by the region). ``context``'s reference and seed are not used: the
    painting is the edit (the seed is recorded).
    """

    name = "artist"

    @staticmethod
    def check_params(
        params: Mapping[str, Any], *, instruction: str = "", settings: Any = None, keyframes: Any = (), **_: Any
    ) -> None:
        """Refuse what `edit` would refuse: bad params, and keyframes still to paint (all listed)."""
        folder, _tolerance, _feather = _parse_params(params, None)
        _require_all_painted({frame: folder / keyframe_filename(frame) for frame in keyframes}, folder, None)

    def edit(self, context: EditContext) -> EditResult:
        # 1. Check the request.
        folder, tolerance, feather = _parse_params(context.params, context.shot)
        region = _check_region(context.region, context.keyframes, context.shot)
        # 2. Every painted file must be there before any is used.
        paths = {kf.source_frame: folder / keyframe_filename(kf.source_frame) for kf in context.keyframes}
        _require_all_painted(paths, folder, context.shot)
        # 3. Read each painting and find where it differs from the original.
        edited: list[EditedKeyframe] = []
        hashes: dict[str, str] = {}
        depths: dict[str, int] = {}
        for keyframe in context.keyframes:
            path = paths[keyframe.source_frame]
            samples, digest = _read_painting(path, keyframe, context.shot)
            changed = changed_pixels(samples, keyframe.image, tolerance=tolerance)
            image, mask = to_float(samples), painted_mask(changed, feather)
            if region is not None:
                image, mask = _confine(image, mask, keyframe.image, region)
            edited.append(EditedKeyframe(keyframe.source_frame, image, mask))
            hashes[path.name] = digest
            depths[path.name] = 8 if samples.dtype == np.uint8 else 16
        info = {
            "editor": self.name,
            "model": None,  # a person painted these
            "settings": {"dir": str(folder), "tolerance": tolerance, "feather": feather},
            "region": region is not None,
            "dir": str(folder),
            "files": hashes,
            "bit_depths": depths,
            "tolerance": tolerance,
            "feather": feather,
            "seed": context.seed,
        }
        return EditResult(keyframes=edited, info=info)


def _parse_params(params: Mapping[str, Any], shot: str) -> tuple[Path, int, int]:
    params = dict(params or {})
    unknown = sorted(set(params) - set(_PARAM_NAMES))
    if unknown:
        raise EditRequestError(
            f"artist does not know the params {unknown}; it takes {list(_PARAM_NAMES)}", shot=shot
        )
    folder = params.get("dir")
    if not isinstance(folder, str) or not folder.strip():
        raise EditRequestError(
            "artist needs params {'dir': FOLDER}: the folder of painted keyframes "
            f"named like {keyframe_filename(0)}; got dir={folder!r}",
            shot=shot,
        )
    tolerance = _int_param(params.get("tolerance", 0), "tolerance", 0, 65535, shot)
    feather = _int_param(params.get("feather", DEFAULT_FEATHER), "feather", 0, MAX_FEATHER, shot)
    return Path(folder).expanduser().absolute(), tolerance, feather


def _int_param(value: Any, name: str, low: int, high: int, shot: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise EditRequestError(
            f"artist param {name} must be an int in [{low}, {high}], got {value!r}", shot=shot
        )
    return value


def _check_region(region: np.ndarray | None, keyframes: Any, shot: str) -> np.ndarray | None:
    if region is None:
        return None
    region = np.asarray(region, dtype=np.float32)
    for keyframe in keyframes:
        size = np.shape(keyframe.image)[:2]
        if region.shape != size:
            raise EditRequestError(
                f"region mask is {region.shape[::-1]} (W×H) but the keyframes are {size[::-1]}", shot=shot
            )
    if not np.all(np.isfinite(region)) or region.min() < 0.0 or region.max() > 1.0:
        raise EditRequestError("region mask must hold values in [0, 1]", shot=shot)
    return region


def _confine(
    painted: np.ndarray, mask: np.ndarray, original: np.ndarray, region: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the painting only inside the region: elsewhere (and where unpainted) the originals."""
    original = np.asarray(original, dtype=np.float32)
    weight = np.where(mask > 0, region, 0.0).astype(np.float32)
    blended = original + weight[..., None] * (painted - original)
    image = np.where(weight[..., None] > 0, blended, original).astype(np.float32)
    return image, (mask * region).astype(np.float32)


def _require_all_painted(paths: Mapping[int, Path], folder: Path, shot: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise KeyframeError("the artist 'dir' is a file, not a folder", shot=shot, path=folder)
    missing = sorted(frame for frame, path in paths.items() if not path.is_file())
    if not missing:
        return
    names = [paths[frame].name for frame in missing]
    note = "" if folder.is_dir() else " (the folder does not exist yet)"
    raise KeyframeError(
        f"{len(missing)} of {len(paths)} keyframes still to paint in {folder}{note}: {', '.join(names)}",
        shot=shot,
        path=folder,
        missing_frames=missing,
        missing_files=names,
    )


def _read_painting(path: Path, keyframe: Keyframe, shot: str) -> tuple[np.ndarray, str]:
    """The file's RGB samples at its own depth, and the SHA-256 of exactly the bytes decoded."""
    try:
        data = path.read_bytes()
        samples = decode_png_samples(data, path)
    except OSError as exc:
        raise KeyframeError(
            f"cannot read the painted keyframe: {exc.strerror or exc}",
            shot=shot,
            frame=keyframe.source_frame,
            path=path,
        ) from exc
    except KeyframeError as exc:
        raise KeyframeError(exc.message, shot=shot, frame=keyframe.source_frame, path=path) from exc
    height, width = np.shape(keyframe.image)[:2]
    if samples.shape[:2] != (height, width):
        raise KeyframeError(
            f"painted keyframe {path.name} is {samples.shape[1]}×{samples.shape[0]} but the source "
            f"frame is {width}×{height}; paint on the exported frame without resizing or cropping",
            shot=shot,
            frame=keyframe.source_frame,
            path=path,
            expected_size=[width, height],
            actual_size=[samples.shape[1], samples.shape[0]],
        )
    return samples, hashlib.sha256(data).hexdigest()


def changed_pixels(samples: np.ndarray, original: np.ndarray, *, tolerance: int = 0) -> np.ndarray:
    """Where a painted file (integer RGB) differs from the float original, as H×W bool.

    The original is quantised exactly as the export quantised it, so an untouched exported
    pixel compares equal whatever the source's own depth was.
    """
    reference = from_float(np.asarray(original, dtype=np.float32), samples.dtype)
    difference = np.abs(samples.astype(np.int32) - reference.astype(np.int32))
    return np.any(difference > tolerance, axis=2)


def painted_mask(changed: np.ndarray, feather: int = DEFAULT_FEATHER) -> np.ndarray:
    """A float mask from changed pixels: holes closed, specks unhaloed, feathered outward only.

    Every changed pixel has mask 1; a pixel farther than `feather` (plus the 1-pixel hole
    closing) from any changed area has exactly 0.
    """
    changed_u8 = changed.astype(np.uint8)
    # 1. Close one-pixel holes and cracks: where a stroke repainted a pixel with the very
    #    value it had, the artist still meant to paint it.
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    filled = cv2.morphologyEx(changed_u8, cv2.MORPH_CLOSE, cross)
    # 2. Isolated specks keep their own pixels (below) but give no halo.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(filled, connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] < MIN_REGION_AREA
    small[0] = False  # label 0 is the background
    core = (filled.astype(bool) & ~small[labels]).astype(np.float32)
    # 3. Feather outward: a blur would also soften the inside, so keep the maximum.
    mask = np.maximum(core, changed.astype(np.float32))
    if feather > 0 and count > 1:
        size = 2 * feather + 1
        mask = np.maximum(mask, cv2.GaussianBlur(core, (size, size), 0))
    return mask.astype(np.float32)
