"""File-system helpers every writer and every command line shares: one atomic write, one way to list inputs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from digitscan.constants import IMAGE_SUFFIXES


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path` in one rename, on any failure
    (an exception, Ctrl-C) it is removed, so a reader never sees half a file and nothing is left behind.

    The temporary name is hidden and unique (several writers of one target never share it), in the same folder
    because os.replace is atomic only within one file system. Create it with the usual calls ("wb", "xb", a
    library's save): it gets the usual umask permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def expand_paths(paths) -> list[Path]:
    """Files as given, folders searched recursively for image files (sorted, so output order is stable).

    A folder that cannot be listed (no permission) or holds no image file stays in the list itself, so it is
    reported as one failed input rather than silently contributing nothing (`check_input` says why); symbolic
    links to folders are not followed (no loops).
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(_image_files_in(path) or [path])
        else:
            files.append(path)  # a missing or unreadable file is reported per file by the decoder
    return files


def _image_files_in(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, _, names in os.walk(folder, onerror=lambda error: found.append(Path(error.filename))):
        candidates = (Path(root) / name for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES)
        found.extend(p for p in candidates if p.is_file())  # not pipes or devices that happen to be named .png
    return sorted(found)
