"""The files a service reads, as part of what is declared: bind-mounted files and folders,
`configs:` and `secrets:` with `file:` (which Compose bind-mounts on one engine), wherever the
compose files (or those they `include` or `extend`) put them. Compose has resolved every path in
the model; `env_file:` needs nothing here, for its values are in `environment` already.

Pure: which paths, and how their content comes to one digest. Reading them is
deployer.infra.files's (on this machine) or the engine's (EngineClient.read_path in deployer.infra.engine).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

FILE_PART = "file:"  # a fingerprint part for a file a service reads: `file:conf/app.conf`
# The label by which a service reloads on a signal instead of being recreated when only files it
# reads changed (a proxy that rereads its configuration on SIGHUP).
RELOAD_SIGNAL_LABEL = "dev.deployer.reload-signal"
# A folder with more files than this is said to be large in the plan: it costs a read of each
# file's size and time (and of the whole content through a remote engine).
LARGE_FOLDER = 10_000
BIND, CONFIG, SECRET = "bind mount", "config", "secret"


@dataclass(frozen=True)
class FileInput:
    """One path a service reads: where the engine's host has it, and how it is shown."""

    path: str  # absolute, as the engine's host sees it
    shown: str  # relative to the project's folder where it is inside it
    kind: str  # BIND, CONFIG or SECRET

    @property
    def part(self) -> str:
        return f"{FILE_PART}{self.shown}"


@dataclass(frozen=True)
class Digest:
    """What reading a path gave: the digest of its content (None: nothing to compare, such as a
    socket), and a line to say about it (a path that is missing, a large folder)."""

    value: str | None
    note: str | None = None


@dataclass(frozen=True)
class ServiceInputs:
    """Per service, the paths it reads."""

    by_service: Mapping[str, tuple[FileInput, ...]] = field(default_factory=dict)


def file_inputs(
    model: Mapping[str, Any], project_dir: str, mask: Callable[[str], str] = str
) -> ServiceInputs:
    """The files each service of a resolved model reads; `mask` hides secret values in the
    paths as shown (a path interpolated from a secret variable)."""
    by_service = {}
    for name, service in sorted((model.get("services") or {}).items()):
        found: dict[str, FileInput] = {}
        for volume in service.get("volumes") or []:
            if (
                isinstance(volume, Mapping)
                and volume.get("type") == "bind"
                and volume.get("source")
            ):
                path = str(volume["source"])
                found[path] = FileInput(path, mask(_shown(path, project_dir)), BIND)
        for key, kind in (("configs", CONFIG), ("secrets", SECRET)):
            declared = model.get(key) or {}
            for reference in service.get(key) or []:
                source = reference.get("source") if isinstance(reference, Mapping) else reference
                entry = declared.get(source) or {}
                if entry.get("file") and not entry.get("external"):
                    path = str(entry["file"])
                    found[path] = FileInput(path, mask(_shown(path, project_dir)), kind)
        if found:
            by_service[name] = tuple(found[p] for p in sorted(found))
    return ServiceInputs(by_service)


def binds(inputs: ServiceInputs) -> dict[str, tuple[FileInput, ...]]:
    """Per service, the paths it bind-mounts (on a swarm: a path of each node)."""
    found = {n: tuple(i for i in e if i.kind == BIND) for n, e in inputs.by_service.items()}
    return {name: entries for name, entries in found.items() if entries}


def per_node_binds(found: Mapping[str, tuple[FileInput, ...]]) -> list[str]:
    """What a swarm plan says of the bind mounts (`binds`) it cannot read: each node has its
    own path."""
    return [
        f"{service}: {entry.kind} {entry.shown} is read on each node where a task runs: "
        "not compared without each node's engine (engine.nodes)"
        for service, entries in sorted(found.items())
        for entry in entries
    ]


def input_notes(
    found: Mapping[str, tuple[FileInput, ...]], digests: Mapping[str, Digest]
) -> tuple[str, ...]:
    """What reading the paths each service reads said, once per line: `web: bind mount data
    does not exist: ...`."""
    notes = {
        f"{service}: {entry.kind} {note}": None
        for service, entries in sorted(found.items())
        for entry in entries
        if (note := digests[entry.path].note)
    }
    return tuple(notes)


def across_nodes(shown: str, by_node: Mapping[str, Digest]) -> Digest:
    """One digest of a path read on several nodes: theirs where they agree, else one of all of
    them, with a note naming each node's."""
    values = {digest.value for digest in by_node.values()}
    notes = [f"on {node}: {d.note}" for node, d in sorted(by_node.items()) if d.note]
    if len(values) == 1:
        [value] = values
        first = next(iter(by_node.values()))
        same_note = len({d.note for d in by_node.values()}) == 1
        return Digest(value, first.note if same_note else "; ".join(notes) or None)
    each = ", ".join(
        f"{node}: {short(d.value) if d.value else 'not content'}"
        for node, d in sorted(by_node.items())
    )
    combined = tree_digest((node, FILE, d.value or "") for node, d in by_node.items())
    return Digest(combined, f"{shown} differs between nodes ({each})")


def _shown(path: str, project_dir: str) -> str:
    relative = os.path.relpath(path, project_dir)
    return path if relative.startswith("..") else relative


CHUNK = 1 << 20  # bytes read at a time, from a file here or an engine's archive


def content_digest(file: IO[bytes]) -> str:
    """The SHA-256 of what is left to read of `file`, read a chunk at a time."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: file.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


# A folder's entries: (path inside it, kind, the digest of a file's content or a link's target).
FILE, FOLDER, LINK = "file", "folder", "link"


def tree_digest(entries: Iterable[tuple[str, str, str]]) -> str:
    """One digest of a folder: its entries' names, kinds and content, in name order; whichever
    way they were read (from the disk here, from an engine's archive) the same digest."""
    digest = hashlib.sha256(b"folder\n")
    for name, kind, content in sorted(entries):
        digest.update(f"{name}\0{kind}\0{content}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# What Compose makes of a bind-mounted path that does not exist: an empty folder. A missing path
# compares as one, so that the first deploy (which creates it) leaves nothing to change.
EMPTY_FOLDER = tree_digest([])


def missing(found: FileInput) -> Digest:
    """A path that does not exist: a bind mount's becomes an empty folder (Compose creates
    one); a config's or secret's file is Compose's to refuse."""
    if found.kind == BIND:
        note = f"{found.shown} does not exist: Compose will create an empty folder there"
        return Digest(EMPTY_FOLDER, note)
    return Digest(None, f"{found.shown} does not exist")


def not_content(shown: str, what: str) -> Digest:
    return Digest(None, f"{shown} is a {what}: not content, not compared")


def folder_digest(shown: str, entries: list[tuple[str, str, str]]) -> Digest:
    """A folder's digest of its entries, with a note where it holds many files."""
    files = sum(1 for _, kind, _ in entries if kind == FILE)
    note = f"{shown} holds {files} files: comparing it reads each one (docs/performance.md)"
    return Digest(tree_digest(entries), note if files > LARGE_FOLDER else None)


def short(digest: str) -> str:
    return digest[:12]


def file_cause(path: str, old: str | None, new: str | None, secret: bool) -> str:
    """`file conf/app.conf changed: sha256 ab12.. -> cd34..`; a secret's file without digests."""
    what = f"secret file {path}" if secret else f"file {path}"
    if old is None or new is None:
        return f"{what} {'added' if old is None else 'removed'}"
    return f"{what} changed" if secret else f"{what} changed: sha256 {short(old)} -> {short(new)}"


def reload_line(signal: str) -> str:
    """The cause that says a service is signalled instead of being recreated or restarted."""
    return f"reloads on {signal} ({RELOAD_SIGNAL_LABEL}): not restarted"
