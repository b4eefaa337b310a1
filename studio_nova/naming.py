"""File-system names for shots and versions: readable for editors, unique inside one output folder."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, fallback: str = "shot") -> str:
    """A folder/file-name-safe version of `text` (clip names may hold spaces, slashes, colons)."""
    cleaned = _UNSAFE.sub("_", text).strip("._")
    return cleaned[:80] or fallback


def version_label(version: int) -> str:
    return f"v{version:03d}"


def shot_slug(name: str, key: str, names_in_cut: list[str]) -> str:
    """The shot's folder name: its clip name, plus its place in the cut when the name repeats."""
    base = safe_name(name)
    if sum(1 for n in names_in_cut if safe_name(n) == base) > 1:
        return f"{base}_{safe_name(key.replace('/', '-'))}"
    return base
