"""File-system names for shots, cuts and versions: readable for editors, and never shared.

A name is *proposed* here (a list of candidates, most readable first) and *allocated* by whoever
knows which names are taken: the store for a run folder (`Store.upsert_shot(slugs=...)`), or
`unique_names` for a one-off export. Deriving a name afresh each time from the clip name is what
let a clip named `x_V1-0` land on another clip's render.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    import opentimelineio as otio

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, fallback: str = "shot") -> str:
    """A folder/file-name-safe version of `text` (clip names may hold spaces, slashes, colons)."""
    cleaned = _UNSAFE.sub("_", text).strip("._")
    return cleaned[:80] or fallback


def version_label(version: int) -> str:
    return f"v{version:03d}"


def key_name(key: str) -> str:
    """A clip's place in the cut as a name: `V1/3` → `V1_3` (nested: `V1/3/V2/0` → `V1_3_V2_0`)."""
    return safe_name(key.replace("/", "_"), "clip")


def shot_name(clip_name: str | None, key: str) -> str:
    """The name a shot goes by: the clip's name as the editor typed it (control characters
    dropped: they cannot be typed back, and some stores refuse them), or for a clip without a
    name (empty, only blanks) its place in the cut, `V1_3`."""
    name = "".join(ch for ch in (clip_name or "") if ch.isprintable() or ch in " \t")
    return name if name.strip() else key_name(key)


def shot_slug_candidates(name: str, key: str, cut: str | None = None) -> list[str]:
    """Folder names for a shot, most readable first: the clip name, then with its place in the
    cut (`sh010_V1-3`), then with the cut's name (a second cut in the same run folder). A name
    with nothing file-safe in it (`???`, `..`) is replaced by its place in the cut (`V1_3`)."""
    place = safe_name(key.replace("/", "-"), "clip")
    base = safe_name(name, "")
    keyed = f"{base}_{place}" if base else key_name(key)
    base = base or keyed
    candidates = [base, keyed]
    if cut:
        candidates += [f"{base}_{safe_name(cut, 'cut')}", f"{keyed}_{safe_name(cut, 'cut')}"]
    return list(dict.fromkeys(candidates))


def cut_slug_candidates(name: str, path_stem: str) -> list[str]:
    """File names for a cut's conformed outputs: its timeline name, then its file's name."""
    return [safe_name(name, "cut"), safe_name(path_stem, "cut")]


def first_free(candidates: Sequence[str], taken: Iterable[str]) -> str:
    """The first candidate not in `taken`, else the first with -2, -3, ... appended."""
    used = set(taken)
    for candidate in candidates:
        if candidate not in used:
            return candidate
    n = 2
    while f"{candidates[0]}-{n}" in used:
        n += 1
    return f"{candidates[0]}-{n}"


def unique_names(proposals: Iterable[Sequence[str]]) -> list[str]:
    """One distinct name per item, each the first of its candidates still free, in order."""
    names: list[str] = []
    for candidates in proposals:
        names.append(first_free(candidates, names))
    return names


def clip_name(clip: "otio.schema.Clip", key: str | None) -> str:
    """The shot's name: the clip's, or its place in the cut when it has none (`naming.shot_name`)."""
    return shot_name(clip.name, key) if key is not None else clip.name


def clip_label(clip: "otio.schema.Clip", key: str | None) -> str:
    """How messages name a clip: `clip 'sh010' (V1/3)`, so a person finds it in the NLE."""
    return f"clip {clip_name(clip, key)!r}" + (f" ({key})" if key is not None else "")
