"""The files services read: which ones (file_inputs, pure) and their digests as read on this
machine (LocalFiles: files, folders, missing paths, sockets, the digest cache, failures)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from deployer.core import inputs
from deployer.core.errors import FileInputError
from deployer.core.inputs import (
    BIND,
    CONFIG,
    EMPTY_FOLDER,
    FILE,
    FOLDER,
    LINK,
    SECRET,
    Digest,
    FileInput,
    ServiceInputs,
    across_nodes,
    binds,
    file_inputs,
    missing,
    not_content,
    per_node_binds,
    tree_digest,
)
from deployer.core.variables import Redactor
from deployer.infra.files import LocalFiles

# A model as `docker compose config --format json` prints it: every path resolved, absolute.
MODEL: dict[str, Any] = {
    "name": "shop",
    "services": {
        "proxy": {
            "image": "nginx:1.27",
            "volumes": [
                {
                    "type": "bind",
                    "source": "/srv/shop/conf/nginx.conf",
                    "target": "/etc/nginx/nginx.conf",
                    "read_only": True,
                    "bind": {"create_host_path": True},
                },
                {
                    "type": "bind",
                    "source": "/srv/shop/static",
                    "target": "/usr/share/nginx/html",
                    "bind": {"create_host_path": True},
                },
                {
                    "type": "bind",
                    "source": "/var/run/docker.sock",
                    "target": "/var/run/docker.sock",
                    "bind": {"create_host_path": True},
                },
            ],
            "configs": [{"source": "proxy_conf", "target": "/etc/proxy.conf"}],
        },
        "web": {
            "image": "ghcr.io/acme/web:1.4.2",
            "volumes": [
                {"type": "volume", "source": "data", "target": "/data", "volume": {}},
                {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 1024}},
                {"type": "bind", "source": "/srv/shared/certs", "target": "/certs"},
            ],
            "configs": [{"source": "banner", "target": "/banner"}],
            "secrets": [
                {"source": "db_password", "target": "/run/secrets/db_password"},
                {"source": "api_key", "target": "/run/secrets/api_key"},
            ],
        },
        "worker": {
            "image": "ghcr.io/acme/worker:2.0",
            "volumes": [{"type": "volume", "source": "data", "target": "/data", "volume": {}}],
            "secrets": ["db_password"],
        },
        "cron": {"image": "ghcr.io/acme/worker:2.0", "configs": [{"source": "banner"}]},
    },
    "configs": {
        "proxy_conf": {"name": "shop_proxy_conf", "file": "/srv/shop/conf/proxy.conf"},
        "banner": {"name": "shop_banner", "content": "hello"},
    },
    "secrets": {
        "db_password": {"name": "shop_db_password", "file": "/srv/shop/secrets/db_password.txt"},
        "api_key": {"name": "api_key", "external": True},
    },
    "volumes": {"data": {"name": "shop_data"}},
}


def test_the_files_each_service_reads() -> None:
    found = file_inputs(MODEL, "/srv/shop")

    db_password = FileInput("/srv/shop/secrets/db_password.txt", "secrets/db_password.txt", SECRET)
    assert found == ServiceInputs(
        {
            "proxy": (
                FileInput("/srv/shop/conf/nginx.conf", "conf/nginx.conf", BIND),
                FileInput("/srv/shop/conf/proxy.conf", "conf/proxy.conf", CONFIG),
                FileInput("/srv/shop/static", "static", BIND),
                FileInput("/var/run/docker.sock", "/var/run/docker.sock", BIND),
            ),
            "web": (FileInput("/srv/shared/certs", "/srv/shared/certs", BIND), db_password),
            "worker": (db_password,),
        }
    )
    assert [i.part for i in found.by_service["proxy"]] == [
        "file:conf/nginx.conf",
        "file:conf/proxy.conf",
        "file:static",
        "file:/var/run/docker.sock",
    ]


def test_a_swarm_plan_says_bind_mounts_are_not_compared_without_engine_nodes() -> None:
    unread = "is read on each node where a task runs: not compared without each node's engine"
    assert per_node_binds(binds(file_inputs(MODEL, "/srv/shop"))) == [
        f"proxy: bind mount conf/nginx.conf {unread} (engine.nodes)",
        f"proxy: bind mount static {unread} (engine.nodes)",
        f"proxy: bind mount /var/run/docker.sock {unread} (engine.nodes)",
        f"web: bind mount /srv/shared/certs {unread} (engine.nodes)",
    ]


def test_a_path_read_on_several_nodes_is_one_digest_where_they_agree() -> None:
    same = {"dh4": Digest("a" * 64), "dh5": Digest("a" * 64)}
    apart = {"dh4": Digest("a" * 64), "dh5": Digest("b" * 64), "dh6": not_content("s", "socket")}
    gone = {"dh4": missing(FileInput("/x", "x", BIND)), "dh5": Digest(EMPTY_FOLDER)}

    assert across_nodes("conf/app.conf", same) == Digest("a" * 64)
    assert across_nodes("conf/app.conf", apart) == Digest(
        tree_digest([("dh4", "file", "a" * 64), ("dh5", "file", "b" * 64), ("dh6", "file", "")]),
        "conf/app.conf differs between nodes (dh4: aaaaaaaaaaaa, dh5: bbbbbbbbbbbb, "
        "dh6: not content)",
    )
    assert across_nodes("x", gone) == Digest(
        EMPTY_FOLDER,
        "on dh4: x does not exist: Compose will create an empty folder there",
    )


def test_a_model_without_files_read_has_no_inputs() -> None:
    model = {"services": {"web": {"image": "web:1", "volumes": [{"type": "volume"}]}}}

    assert file_inputs(model, "/srv/shop") == ServiceInputs({})
    assert file_inputs({}, "/srv/shop") == ServiceInputs({})


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _read(cache: Path, *found: FileInput) -> dict[str, Digest]:
    return LocalFiles(cache=cache).digests({f.path: f for f in found})


def test_a_file_digests_as_the_sha256_of_its_content(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_bytes(b"worker_processes 4;\n")

    found = FileInput(str(conf), "app.conf", BIND)

    assert _read(tmp_path / "cache.json", found) == {
        str(conf): Digest(_sha256(b"worker_processes 4;\n"))
    }


def _static(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "site.css").write_bytes(b"body {}\n")
    (static / "index.html").write_bytes(b"<h1>shop</h1>\n")
    (static / "home.html").symlink_to("index.html")
    return static


def test_a_folder_digests_its_tree_and_changes_with_a_nested_file(tmp_path: Path) -> None:
    static = _static(tmp_path)
    found = FileInput(str(static), "static", BIND)
    expected = tree_digest(
        [
            ("css", FOLDER, ""),
            ("css/site.css", FILE, _sha256(b"body {}\n")),
            ("home.html", LINK, "index.html"),
            ("index.html", FILE, _sha256(b"<h1>shop</h1>\n")),
        ]
    )

    first = _read(tmp_path / "cache.json", found)
    again = _read(tmp_path / "other-cache.json", found)
    (static / "css" / "site.css").write_bytes(b"body { margin: 0 }\n")
    changed = _read(tmp_path / "cache.json", found)

    assert first == again == {str(static): Digest(expected)}
    renewed = tree_digest(
        [
            ("css", FOLDER, ""),
            ("css/site.css", FILE, _sha256(b"body { margin: 0 }\n")),
            ("home.html", LINK, "index.html"),
            ("index.html", FILE, _sha256(b"<h1>shop</h1>\n")),
        ]
    )
    assert changed == {str(static): Digest(renewed)}
    assert renewed != expected


def test_an_empty_folder_digests_as_a_missing_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    found = FileInput(str(tmp_path / "empty"), "empty", BIND)

    assert _read(tmp_path / "cache.json", found) == {str(tmp_path / "empty"): Digest(EMPTY_FOLDER)}


def test_a_large_folder_is_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "LARGE_FOLDER", 2)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b", "c"):
        (data / name).write_bytes(name.encode())
    found = FileInput(str(data), "data", BIND)

    expected = tree_digest([(n, FILE, _sha256(n.encode())) for n in ("a", "b", "c")])
    assert _read(tmp_path / "cache.json", found) == {
        str(data): Digest(
            expected, "data holds 3 files: comparing it reads each one (docs/performance.md)"
        )
    }


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (a unix socket's path is limited to 107 bytes) that any user
    can enter (pytest's tmp_path is under a folder only its owner can)."""
    folder = Path(tempfile.mkdtemp(prefix="inputs-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_missing_paths_sockets_and_named_pipes_are_said_not_read(short_dir: Path) -> None:
    conf = short_dir / "app.conf"
    conf.write_bytes(b"x")
    os.mkfifo(short_dir / "events")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(short_dir / "docker.sock"))
        found = [
            FileInput(str(conf), "app.conf", CONFIG),
            FileInput(str(short_dir / "docker.sock"), "docker.sock", BIND),
            FileInput(str(short_dir / "events"), "events", BIND),
            FileInput(str(short_dir / "missing"), "conf/missing", BIND),
        ]

        digests = _read(short_dir / "cache.json", *found)
    finally:
        server.close()

    assert digests == {
        str(conf): Digest(_sha256(b"x")),
        str(short_dir / "docker.sock"): Digest(
            None, "docker.sock is a socket: not content, not compared"
        ),
        str(short_dir / "events"): Digest(
            None, "events is a named pipe: not content, not compared"
        ),
        str(short_dir / "missing"): Digest(
            EMPTY_FOLDER, "conf/missing does not exist: Compose will create an empty folder there"
        ),
    }


def _as_nobody(read: Any) -> Any:
    """`read()` with the effective user nobody's, under which root's 0600 files are unreadable."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to read as another user (seteuid)")
    os.seteuid(65534)
    try:
        return read()
    finally:
        os.seteuid(0)


def test_an_unreadable_file_is_an_error_of_one_line(short_dir: Path) -> None:
    secret = short_dir / "db_password.txt"
    secret.write_bytes(b"hunter2")
    secret.chmod(0o600)
    found = FileInput(str(secret), "secrets/db_password.txt", SECRET)

    with pytest.raises(FileInputError) as raised:
        _as_nobody(lambda: _read(short_dir / "cache.json", found))

    assert raised.value.lines() == [
        f"secret secrets/db_password.txt: cannot be read ({secret}: Permission denied); "
        "nothing changed"
    ]


def test_an_unreadable_file_or_folder_inside_a_folder_is_an_error(short_dir: Path) -> None:
    static = short_dir / "static"
    (static / "private").mkdir(parents=True)
    static.chmod(0o755)
    (static / "private").chmod(0o700)
    found = FileInput(str(static), "static", BIND)

    with pytest.raises(FileInputError) as raised:
        _as_nobody(lambda: _read(short_dir / "cache.json", found))

    assert raised.value.lines() == [
        f"bind mount static: cannot be read ({static / 'private'}: Permission denied); "
        "nothing changed"
    ]

    (static / "private").chmod(0o755)
    (static / "private" / "key.pem").write_bytes(b"key")
    (static / "private" / "key.pem").chmod(0o600)

    with pytest.raises(FileInputError) as raised:
        _as_nobody(lambda: _read(short_dir / "cache.json", found))

    assert raised.value.lines() == [
        f"bind mount static: cannot be read ({static / 'private' / 'key.pem'}: "
        "Permission denied); nothing changed"
    ]


def test_the_cache_keeps_a_digest_per_size_time_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache" / "files.json"
    conf = tmp_path / "app.conf"
    conf.write_bytes(b"level=info\n")
    found = FileInput(str(conf), "app.conf", BIND)
    info = conf.stat()
    first = _sha256(b"level=info\n")

    assert _read(cache, found) == {str(conf): Digest(first)}
    assert json.loads(cache.read_text()) == {
        str(conf): [info.st_size, info.st_mtime_ns, info.st_ino, first]
    }

    # Other content of the same size, at the same time, in the same file: not read again.
    with conf.open("r+b") as file:
        file.write(b"level=warn\n")
    os.utime(conf, ns=(info.st_atime_ns, info.st_mtime_ns))

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"opened {args}")

    with monkeypatch.context() as patched:
        patched.setattr("deployer.infra.files.open", refused, raising=False)
        assert _read(cache, found) == {str(conf): Digest(first)}

    # Another size: read again, and the cache has the new digest.
    conf.write_bytes(b"level=debug\n")
    renewed = conf.stat()
    assert _read(cache, found) == {str(conf): Digest(_sha256(b"level=debug\n"))}
    assert json.loads(cache.read_text()) == {
        str(conf): [
            renewed.st_size,
            renewed.st_mtime_ns,
            renewed.st_ino,
            _sha256(b"level=debug\n"),
        ]
    }

    # Another file in its place (an editor's save), of the same size and time: read again.
    replacement = tmp_path / "app.conf.new"
    replacement.write_bytes(b"level=trace\n")
    os.utime(replacement, ns=(renewed.st_atime_ns, renewed.st_mtime_ns))
    os.replace(replacement, conf)
    assert conf.stat().st_ino != renewed.st_ino

    assert _read(cache, found) == {str(conf): Digest(_sha256(b"level=trace\n"))}


def test_a_damaged_cache_is_passed_over_and_written_anew(tmp_path: Path) -> None:
    cache = tmp_path / "files.json"
    cache.write_text("{not json")
    conf = tmp_path / "app.conf"
    conf.write_bytes(b"a")
    info = conf.stat()

    assert _read(cache, FileInput(str(conf), "app.conf", BIND)) == {
        str(conf): Digest(_sha256(b"a"))
    }
    assert json.loads(cache.read_text()) == {
        str(conf): [info.st_size, info.st_mtime_ns, info.st_ino, _sha256(b"a")]
    }


def test_a_file_that_changes_on_every_read_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "app.conf"
    conf.write_bytes(b"a log that grows")
    found = FileInput(str(conf), "conf/app.conf", BIND)
    real_fstat = os.fstat
    reads: list[int] = []

    def growing(fd: int) -> Any:
        info = real_fstat(fd)
        reads.append(fd)
        return SimpleNamespace(
            st_size=info.st_size + len(reads), st_mtime_ns=info.st_mtime_ns, st_ino=info.st_ino
        )

    monkeypatch.setattr(os, "fstat", growing)

    with pytest.raises(FileInputError) as raised:
        _read(tmp_path / "cache.json", found)

    assert raised.value.lines() == [
        f"bind mount conf/app.conf: cannot be read ({conf} changed while it was read (3 times)); "
        "nothing changed"
    ]
    assert len(reads) == 3
    assert not (tmp_path / "cache.json").exists()


def test_a_secret_in_a_path_is_masked_where_it_is_shown_not_where_it_is_read() -> None:
    model = {
        "services": {
            "web": {
                "volumes": [
                    {"type": "bind", "source": "/srv/shop/keys/s3cret-path-99", "target": "/k"}
                ]
            }
        }
    }
    mask = Redactor()
    mask.add(["s3cret-path-99"])

    assert file_inputs(model, "/srv/shop", mask) == ServiceInputs(
        {"web": (FileInput("/srv/shop/keys/s3cret-path-99", "keys/***", BIND),)}
    )


def test_a_device_is_not_content() -> None:
    found = FileInput("/dev/null", "/dev/null", BIND)

    assert LocalFiles(Path("/nonexistent/cache.json")).digests({found.path: found}) == {
        "/dev/null": Digest(None, "/dev/null is a device: not content, not compared")
    }
