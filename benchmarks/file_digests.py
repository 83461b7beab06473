"""Benchmark: what comparing the files a service reads costs, for a bind-mounted folder of many
files (docs/reconcile.md, "The files a service reads").

Makes a folder of --files small files (4 KiB each, 100 per subfolder) and measures, with the
digest cache of deployer.infra.files in a folder of its own:
- cold: the first read (every file's content read and hashed, the cache written);
- warm: the next (one stat per file, the cache read; nothing changed);
- one changed: after one file changed (that file read again);
- through the engine (with --engine): the same folder read as for a remote engine, through a
  container of the empty image and the engine's archive of it (every byte streamed each time).

    .venv/bin/python benchmarks/file_digests.py [--files 100000] [--engine]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from deployer.core.inputs import BIND, FileInput
from deployer.infra.files import LocalFiles


def make_folder(root: Path, files: int) -> None:
    block = os.urandom(4096)
    for index in range(files):
        folder = root / f"d{index // 100:05d}"
        if index % 100 == 0:
            folder.mkdir()
        (folder / f"f{index:06d}").write_bytes(block[: 4000 + index % 96])


def timed(what: str, read: object) -> float:
    started = time.perf_counter()
    digest = read() if callable(read) else None
    seconds = time.perf_counter() - started
    print(f"{what:<22} {seconds:7.2f} s  {getattr(digest, 'value', '')[:12]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--engine", action="store_true", help="also read through the engine")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder, cache = Path(work) / "site", Path(work) / "cache" / "files.json"
        folder.mkdir()
        make_folder(folder, arguments.files)
        found = FileInput(str(folder), "site", BIND)
        print(f"a folder of {arguments.files} files of about 4 KiB")
        timed("cold (no cache)", lambda: LocalFiles(cache).digests({found.path: found})[found.path])
        timed(
            "warm (nothing changed)",
            lambda: LocalFiles(cache).digests({found.path: found})[found.path],
        )
        (folder / "d00000" / "f000000").write_bytes(b"changed")
        timed(
            "one file changed", lambda: LocalFiles(cache).digests({found.path: found})[found.path]
        )
        if arguments.engine:
            from deployer.infra.engine import Engine, EngineClient

            client = EngineClient(Engine.choose(None, os.environ))
            timed("through the engine", lambda: client.read_path(found))


if __name__ == "__main__":
    main()
