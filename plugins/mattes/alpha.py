"""`alpha`: the source file's own alpha channel as the matte (ProRes 4444, QuickTime RGBA, FFV1 RGBA).

A keyed or CG element delivered with alpha needs no keying: the alpha of source frame `i` is
read from the same file, frame-exact (`studio_nova.media.decode.read_alpha`), and the subject's
colour is the RGB as decoded. ProRes 4444 and most deliveries carry *straight* alpha (the RGB is
the subject's full colour, also where it is partly transparent); a file written premultiplied
(RGB already multiplied by alpha) says so with ``premultiplied: true`` and is divided back out.

The media layer reads video files only; an image sequence with alpha is read with the `file`
source (``channel: alpha``) until the media layer ingests sequences as sources.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from studio_nova.errors import EditRequestError
from studio_nova.media.decode import read_alpha
from studio_nova.plugin_api.mattes import Matte, MatteContext

from ._params import as_float, check_names, flag

NAME = "alpha"
_PARAMS = ("premultiplied",)


class AlphaMatte:
    """The source's own alpha channel (straight by default; `premultiplied: true` to divide it out)."""

    name: ClassVar[str] = NAME
    context_frames: ClassVar[int] = 0  # frame by frame: no neighbours needed

    def __init__(self, **params: Any) -> None:
        check_names(NAME, params, _PARAMS)
        self.premultiplied = flag(NAME, "premultiplied", params.get("premultiplied", False))

    def mattes(self, context: MatteContext) -> Matte:
        media = context.media
        if not media.has_alpha:
            raise EditRequestError(
                f"matte source {NAME!r} needs a source with an alpha channel, but its pixel "
                f"format is {media.pix_fmt} (use e.g. ProRes 4444 with alpha, or the 'chroma' "
                f"or 'file' matte source)",
                shot=context.shot,
                path=media.path,
            )
        n = len(context.frames)
        first = context.first_frame
        alpha = np.stack(list(read_alpha(media, first, first + n - 1)))
        if alpha.shape != context.frames.shape[:3]:
            raise EditRequestError(
                f"matte source {NAME!r}: the alpha channel decodes as {alpha.shape[1:]} but the "
                f"frames are {context.frames.shape[1:3]}",
                shot=context.shot,
                path=media.path,
                frame=first,
            )
        foreground = as_float(context.frames).copy()
        if self.premultiplied:
            covered = alpha > 1e-4
            foreground[covered] /= alpha[covered][:, None]
            np.clip(foreground, 0.0, 1.0, out=foreground)
        return Matte(
            alpha=alpha,
            foreground=foreground,
            info={"source": NAME, "premultiplied": self.premultiplied, "pix_fmt": media.pix_fmt},
        )
