"""Reading an environment of several hosts on the multi-host bed: diff and status per host (a
drifted host, mixed versions, a host whose engine is down), logs prefixed by host, `--hosts`,
the lock as each host holds it, and a rolling restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Fleet, Result, ok

pytestmark = pytest.mark.integration


def deploy_each(fleet: Fleet) -> None:
    """`test` deployed on every host, one host at a time."""
    for url in fleet.urls:
        ok(fleet.deploy("test", "--yes", "--hosts", url))


def drift(fleet: Fleet, k: int, web_tag: str) -> None:
    """Host k made to run another web tag: deployed there by a spec that differs, then the spec
    set back. The other hosts are untouched."""
    env = fleet.environments / "app/.env"
    text = env.read_text()
    env.write_text(text.replace("WEB_TAG=1.0.0", f"WEB_TAG={web_tag}"))
    ok(fleet.deploy("test", "--yes", "--hosts", fleet.urls[k - 1]))
    env.write_text(text)


def document(result: Result) -> dict[str, Any]:
    loaded = json.loads(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("fleet", ["unix", "ssh"], indirect=True)
def test_diff_over_three_hosts_shows_the_drifted_one(fleet: Fleet) -> None:
    deploy_each(fleet)
    drift(fleet, 2, "1.1.0")
    one, two, three = fleet.urls

    diff = fleet.deploy("diff", "test", "--json")
    text = fleet.deploy("diff", "test")

    assert diff.returncode == 2, diff.stderr
    change = {
        "service": "web",
        "action": "recreate",
        "causes": [f"image {app_image(fleet)}:1.1.0 -> 1.0.0"],
        "order": "stop-first",
        "order_reason": "default order",
    }
    assert document(diff) == {
        "environment": "test",
        "project": fleet.project,
        "in_sync": False,
        "changes": [{"host": two, **change}],
        "hosts": [
            {"host": one, "in_sync": True, "changes": [], "notes": [], "error": None},
            {"host": two, "in_sync": False, "changes": [change], "notes": [], "error": None},
            {"host": three, "in_sync": True, "changes": [], "notes": [], "error": None},
        ],
    }
    assert (text.returncode, text.stderr) == (2, "")
    assert text.stdout == (
        f"test (project {fleet.project}) on {one}: in sync, nothing to change\n\n"
        f"test (project {fleet.project}) on {two}: 1 change\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        f"web      recreate  stop-first (default order)  {change['causes'][0]}\n\n"
        f"test (project {fleet.project}) on {three}: in sync, nothing to change\n\n"
        f"test (project {fleet.project}): 3 hosts: 2 in sync, 1 with changes\n"
    )


def app_image(fleet: Fleet) -> str:
    """The test app's repository as the hosts pull it."""
    env = (fleet.environments / "app/.env").read_text()
    registry = next(line for line in env.splitlines() if line.startswith("REGISTRY="))
    return registry.removeprefix("REGISTRY=") + "/testapp"


def test_status_shows_which_hosts_run_which_version(fleet: Fleet) -> None:
    deploy_each(fleet)
    drift(fleet, 3, "1.1.0")
    one, two, three = fleet.urls
    image = app_image(fleet)
    ids = {
        k: fleet.containers_on(k, "web")[0].attrs["Image"].removeprefix("sha256:")[:12]
        for k in (1, 3)
    }

    status = fleet.deploy("status", "test")
    as_json = document(fleet.deploy("status", "test", "--json"))

    assert status.returncode == 0, status.stderr  # healthy everywhere, though not in sync
    lines = status.stdout.splitlines()
    assert lines[:5] == [
        f"test (project {fleet.project}): 3 hosts: healthy, NOT in sync (see `deploy diff`)",
        "  web: MIXED versions",
        f"    {image}:1.0.0 ({ids[1]}) on {one}, {two}",
        f"    {image}:1.1.0 ({ids[3]}) on {three}",
        f"  worker: {image}:1.0.0 ({ids[1]}) on every host",
    ]
    assert f"test (project {fleet.project}) on {three}: healthy, NOT in sync" in status.stdout
    [web] = [s for s in as_json["services"] if s["service"] == "web"]
    assert [(i["image"], i["hosts"]) for i in web["images"]] == [
        (f"{image}:1.0.0", [one, two]),
        (f"{image}:1.1.0", [three]),
    ]
    assert [(c["host"], c["image"]) for c in web["containers"]] == [
        (one, f"{image}:1.0.0"),
        (two, f"{image}:1.0.0"),
        (three, f"{image}:1.1.0"),
    ]
    assert [(h["host"], h["in_sync"], h["healthy"]) for h in as_json["hosts"]] == [
        (one, True, True),
        (two, True, True),
        (three, False, True),
    ]


def test_a_host_whose_engine_is_down_is_named_and_the_others_still_shown(fleet: Fleet) -> None:
    deploy_each(fleet)
    one, two, three = fleet.urls
    fleet.bed.stop_engine(2)

    diff = fleet.deploy("diff", "test", "--json")
    status = fleet.deploy("status", "test")
    lock = fleet.deploy("lock", "status", "test")

    assert diff.returncode == 1
    assert diff.stderr == f"error: test: failed on {two}\n"
    hosts = document(diff)["hosts"]
    assert [(h["host"], h["in_sync"]) for h in hosts] == [
        (one, True),
        (two, None),
        (three, True),
    ]
    assert hosts[1]["error"].startswith(f"Docker engine at {two} is unreachable: ")
    assert status.returncode == 1
    assert status.stdout.splitlines()[0] == (
        f"test (project {fleet.project}): 3 hosts: NOT healthy, NOT in sync "
        f"(see `deploy diff`); state unknown on {two}"
    )
    assert f"test (project {fleet.project}) on {two}: state unknown\n  error: " in status.stdout
    assert f"test (project {fleet.project}) on {one}: healthy, in sync" in status.stdout
    assert status.stderr == f"error: test: failed on {two}\n"
    assert (lock.returncode, lock.stdout.splitlines()[-1]) == (1, "test: locked on 0 of 3 hosts")
    assert f"test on {one}: not locked" in lock.stdout


def test_hosts_option_limits_diff_to_one_host(fleet: Fleet) -> None:
    deploy_each(fleet)
    drift(fleet, 2, "1.1.0")
    fleet.bed.stop_engine(3)
    one, two, _ = fleet.urls

    only_one = fleet.deploy("diff", "test", "--hosts", one)
    only_two = fleet.deploy("diff", "test", "--json", "--hosts", two)

    # One host: the output of an environment of one host, as ever.
    assert (only_one.returncode, only_one.stdout, only_one.stderr) == (
        0,
        f"test (project {fleet.project}): in sync, nothing to change\n",
        "",
    )
    assert only_two.returncode == 2, only_two.stderr
    assert [h["host"] for h in document(only_two)["hosts"]] == [two]


def test_logs_of_every_host_are_prefixed_by_the_host(fleet: Fleet) -> None:
    deploy_each(fleet)
    prefixes = {url: url.ljust(max(len(u) for u in fleet.urls)) for url in fleet.urls}

    logs = fleet.deploy("logs", "test", "web", "--tail", "1")

    assert (logs.returncode, logs.stderr) == (0, "")
    assert sorted(logs.stdout.splitlines()) == sorted(
        f"{prefixes[url]} | web-1  | app 1.0.0 starting: httpd -f -p 8080 -h /www"
        for url in fleet.urls
    )


def test_logs_follow_every_host_and_stop_with_deployer(fleet: Fleet) -> None:
    deploy_each(fleet)
    follow = subprocess.Popen(
        [sys.executable, "-m", "deployer", "logs", "test", "web", "--follow", "--tail", "1"],
        cwd=fleet.root,
        env={**os.environ, **fleet.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        seen = [follow.stdout.readline() for _ in fleet.urls]
        followers = children(follow.pid)
        follow.send_signal(signal.SIGTERM)  # to deployer alone: it stops its `compose logs`
        follow.wait(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert sorted(line.partition(" ")[0] for line in seen) == sorted(fleet.urls)
    assert follow.returncode == 130
    assert len(followers) == len(fleet.urls)
    assert [pid for pid in followers if Path(f"/proc/{pid}").exists()] == []


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


def test_a_rolling_restart_restarts_a_host_once_the_one_before_is_healthy(fleet: Fleet) -> None:
    deploy_each(fleet)
    started = time.time_ns()

    restart = fleet.deploy("restart", "test", "web", "--yes")

    assert restart.returncode == 0, restart.stderr
    lines = restart.stdout.splitlines()
    assert lines[0::2] == [f"{url}:" for url in fleet.urls]
    assert all(line.startswith(f"  restarted {fleet.project}-web-1: Up ") for line in lines[1::2])
    # Per host, when its web was stopped for the restart and when it was healthy again.
    stopped, healthy = [], []
    for k in fleet.bed.numbers:
        happened = events(fleet, k, started)
        stopped.append(min(t for t, action in happened if action == "kill"))
        healthy.append(
            min(t for t, a in happened if a == "health_status: healthy" and t > stopped[-1])
        )
    assert all(healthy[k] < stopped[k + 1] for k in range(len(fleet.urls) - 1))


def events(fleet: Fleet, k: int, since_ns: int) -> list[tuple[int, str]]:
    """The events of the project's web container on host k since a time (engine clock, which
    is this machine's)."""
    client = fleet.bed.client(k)
    found = client.events(
        since=since_ns // 10**9,
        until=time.time() + 1,
        decode=True,
        filters={"type": "container", "label": f"com.docker.compose.project={fleet.project}"},
    )
    return [(e["timeNano"], e["Action"]) for e in found if e["timeNano"] >= since_ns]


def test_down_takes_every_host_down_one_after_the_other(fleet: Fleet) -> None:
    deploy_each(fleet)

    down = fleet.deploy("down", "test", "--yes")

    assert (down.returncode, down.stdout) == (
        0,
        "".join(f"{url}:\n  test is down\n" for url in fleet.urls),
    )
    assert [fleet.containers_on(k) for k in fleet.bed.numbers] == [[], [], []]


def test_promote_from_several_hosts_needs_every_host_in_sync_and_pins_what_they_all_run(
    fleet: Fleet,
) -> None:
    """`deploy promote` reads SOURCE on every host: one host off its spec refuses, naming it."""
    target = f"{fleet.project}-target"
    fleet.other_projects.append(target)  # its audit entry goes to host 1
    fleet.write(
        "target.yml",
        f"project: {target}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"engine: {{host: '{fleet.urls[0]}'}}\n",
    )
    deploy_each(fleet)
    drift(fleet, 3, "1.1.0")

    refused = fleet.deploy("promote", "test", "target", "--services", "web", "--yes")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"error: cannot promote test to target: test is not in sync with its spec on "
        f"{fleet.urls[2]} (`deploy diff test` shows how)"
    ]
    ok(fleet.deploy("test", "--yes", "--hosts", fleet.urls[2]))

    promoted = fleet.deploy("promote", "test", "target", "--services", "web", "--yes", "--json")
    digests = {
        container.image.attrs["RepoDigests"][0].split("@")[1]
        for k in fleet.bed.numbers
        for container in fleet.containers_on(k, "web")
    }
    assert len(digests) == 1  # every host runs the very same image
    pinned = [service["pinned"] for service in document(ok(promoted))["services"]]
    assert pinned == [f"{app_image(fleet)}:1.0.0@{digests.pop()}"]
    assert f"image: {pinned[0]}" in (fleet.environments / "target.yml").read_text()
