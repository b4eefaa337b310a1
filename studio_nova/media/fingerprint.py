"""Cheap fingerprints of the files a render reads, so a changed file is never mistaken for the
one a render was made from.

Size and mtime catch an ordinary rewrite; hashes of the first and last MiB catch a file replaced
by one of the same size whose mtime was kept (`cp -p`, `rsync -t`, a restore from backup) —
without reading a 100 GB camera original end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from studio_nova.errors import MediaError

EDGE_BYTES = 1 << 20  # hashed at each end of a file
MAX_LISTED = 20_000  # files of a folder (an image sequence, a model) listed in its fingerprint


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`{path, size, mtime_ns, head, tail}` of a file: what identifies its content cheaply."""
    file = Path(path).absolute()
    try:
        stat = file.stat()
        with file.open("rb") as handle:
            head = hashlib.sha256(handle.read(EDGE_BYTES)).hexdigest()
            if stat.st_size > EDGE_BYTES:
                handle.seek(max(EDGE_BYTES, stat.st_size - EDGE_BYTES))
                tail = hashlib.sha256(handle.read(EDGE_BYTES)).hexdigest()
            else:
                tail = head
    except OSError as exc:
        raise MediaError(f"cannot be read to fingerprint it: {exc.strerror or exc}", path=file) from exc
    return {"path": str(file), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head": head, "tail": tail}


def folder_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`{path, files}`: a digest of every file's relative name, size and mtime under a folder
    (image sequences, model folders; their content is too large to hash on every run)."""
    folder = Path(path).absolute()
    digest = hashlib.sha256()
    count = 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            file = Path(root, name)
            try:
                stat = file.stat()
            except OSError:
                continue
            digest.update(f"{file.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            count += 1
            if count >= MAX_LISTED:
                break
        if count >= MAX_LISTED:
            break
    return {"path": str(folder), "files": count, "listing": digest.hexdigest()}


def fingerprint_paths(value: Any, skip: frozenset[str] = frozenset({"base_dir"})) -> Any:
    """`value` (JSON-like) with every absolute path of an existing file or folder replaced by its
    fingerprint: a plate, a matte sequence or a weights folder named in an edit request or in a
    backend's settings decides pixels as much as the request's own words. Values under the keys
    in `skip` are kept as they are (`base_dir` is where relative paths were resolved from, not an
    input: its listing changes whenever anything is written next to the cut)."""
    if isinstance(value, dict):
        return {k: v if k in skip else fingerprint_paths(v, skip) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fingerprint_paths(v, skip) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and len(value) < 4096:
        path = Path(value)
        if path.is_file():
            return file_fingerprint(path)
        if path.is_dir():
            return folder_fingerprint(path)
    return value


def json_digest(payload: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, no spaces): equal values, equal digests."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
