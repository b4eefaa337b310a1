"""Conversions between decoded frames (uint8 / uint16 RGB) and the float32 working space.

Editors and propagators work in float32 RGB in [0, 1]; media I/O works in the source's own
integer depth so that untouched pixels can be written back bit-exactly.
"""

from __future__ import annotations

import numpy as np


def max_value(dtype: np.dtype | type) -> float:
    """Full-scale value of an integer frame dtype (255 for uint8, 65535 for uint16)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    raise TypeError(f"frames must be uint8 or uint16, got {dtype}")


def to_float(frame: np.ndarray) -> np.ndarray:
    """Integer RGB frame(s) → float32 in [0, 1]."""
    return frame.astype(np.float32) * np.float32(1.0 / max_value(frame.dtype))


def from_float(frame: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """float RGB in [0, 1] → integer frame(s) of `dtype`, rounded and clipped."""
    scale = max_value(dtype)
    return np.clip(np.rint(frame * scale), 0, scale).astype(dtype)
