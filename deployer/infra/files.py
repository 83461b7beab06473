"""The files services read, read on this machine: for an engine on this machine (a unix
socket), whose bind mounts name this machine's paths.

A file's content is read once per size and modification time: the digests are kept in a cache
(`$XDG_CACHE_HOME/deployer/files.json`), so that a large folder costs one `stat` per file when
nothing in it changed. A file that changes while it is read is read again.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from deployer.core.errors import FileInputError
from deployer.core.inputs import (
    FILE,
    FOLDER,
    LINK,
    Digest,
    FileInput,
    content_digest,
    folder_digest,
    missing,
    not_content,
)

_ATTEMPTS = 3  # reads of a file that keeps changing while it is read


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deployer" / "files.json"


class LocalFiles:
    """Reads paths on this machine, with the digest cache."""

    def __init__(self, cache: Path | None = None) -> None:
        self._path = cache or cache_path()
        self._cache: dict[str, list[object]] = {}  # path -> [size, mtime_ns, inode, digest]
        self._seen: dict[str, list[object]] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(self._path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._cache = loaded

    def digests(self, inputs: Mapping[str, FileInput]) -> dict[str, Digest]:
        """Each path's digest (by path); the cache is saved once all are read."""
        try:
            return {path: self.digest(found) for path, found in sorted(inputs.items())}
        finally:
            self._save()

    def digest(self, found: FileInput) -> Digest:
        try:
            info = os.stat(found.path)
        except FileNotFoundError:
            return missing(found)
        except OSError as e:
            raise FileInputError(found.shown, found.kind, e.strerror or str(e)) from e
        if stat.S_ISDIR(info.st_mode):
            entries = list(self._tree(found))
            return folder_digest(found.shown, entries)
        if not stat.S_ISREG(info.st_mode):
            return not_content(found.shown, _kind_of(info.st_mode))
        return Digest(self._file(found.path, found))

    def _tree(self, found: FileInput) -> Iterator[tuple[str, str, str]]:
        def failed(error: OSError) -> None:
            raise FileInputError(found.shown, found.kind, f"{error.filename}: {error.strerror}")

        for folder, folders, files in os.walk(found.path, onerror=failed):
            inside = os.path.relpath(folder, found.path)
            for name in folders + files:
                path = os.path.join(folder, name)
                relative = os.path.normpath(os.path.join(inside, name))
                try:
                    info = os.lstat(path)
                except OSError as e:
                    raise FileInputError(found.shown, found.kind, f"{path}: {e.strerror}") from e
                if stat.S_ISLNK(info.st_mode):
                    yield relative, LINK, os.readlink(path)
                elif stat.S_ISDIR(info.st_mode):
                    yield relative, FOLDER, ""
                elif stat.S_ISREG(info.st_mode):
                    yield relative, FILE, self._file(path, found, info)
                else:
                    yield relative, _kind_of(info.st_mode), ""

    def _file(self, path: str, found: FileInput, listed: os.stat_result | None = None) -> str:
        """A regular file's digest: the cached one while its size and time are those it had
        (`listed`: its stat, where the folder's walk has it already)."""
        for attempt in range(_ATTEMPTS):
            try:
                before = listed if listed is not None and attempt == 0 else os.stat(path)
                key = [before.st_size, before.st_mtime_ns, before.st_ino]
                cached = self._cache.get(path)
                if cached is not None and cached[:3] == key:
                    self._seen[path] = cached
                    return str(cached[3])
                with open(path, "rb") as file:
                    digest = content_digest(file)
                    after = os.fstat(file.fileno())
            except OSError as e:
                raise FileInputError(found.shown, found.kind, f"{path}: {e.strerror}") from e
            if [after.st_size, after.st_mtime_ns, after.st_ino] == key:
                self._seen[path] = [*key, digest]
                return digest
        raise FileInputError(
            found.shown, found.kind, f"{path} changed while it was read ({_ATTEMPTS} times)"
        )

    def _save(self) -> None:
        """Add the digests read this time to the cache (where any is new)."""
        if all(self._cache.get(path) == entry for path, entry in self._seen.items()):
            return
        with contextlib.suppress(OSError):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self._path.parent, delete=False, encoding="utf-8"
            ) as file:
                json.dump({**self._cache, **self._seen}, file, separators=(",", ":"))
            os.replace(file.name, self._path)


def _kind_of(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
