"""File-system names for shots, cuts and versions: readable for editors, and never shared.

A name is *proposed* here (a list of candidates, most readable first) and *allocated* by whoever
knows which names are taken: the store for a run folder (`Store.upsert_shot(slugs=...)`), or
`unique_names` for a one-off export. Deriving a name afresh each time from the clip name is what
let a clip named `x_V1-0` land on another clip's render.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, fallback: str = "shot") -> str:
    """A folder/file-name-safe version of `text` (clip names may hold spaces, slashes, colons)."""
    cleaned = _UNSAFE.sub("_", text).strip("._")
    return cleaned[:80] or fallback


def version_label(version: int) -> str:
    return f"v{version:03d}"


def shot_slug_candidates(name: str, key: str, cut: str | None = None) -> list[str]:
    """Folder names for a shot, most readable first: the clip name, then with its place in the
    cut (`sh010_V1-3`), then with the cut's name (a second cut in the same run folder)."""
    base = safe_name(name)
    keyed = f"{base}_{safe_name(key.replace('/', '-'))}"
    candidates = [base, keyed]
    if cut:
        candidates += [f"{base}_{safe_name(cut, 'cut')}", f"{keyed}_{safe_name(cut, 'cut')}"]
    return candidates


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
