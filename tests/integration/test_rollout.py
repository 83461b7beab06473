"""Rolling deploys over the bed's three engines: batches in order, a failing batch rolled back
with later hosts untouched, an engine stopped mid-deploy, two deploys at once, Ctrl-C
mid-rollout, rollback across hosts, and history flagging a host that diverged."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import pytest

from tests.integration.conftest import REGISTRY, Fleet, ok
from tests.integration.test_faults import start

pytestmark = pytest.mark.integration

# web becomes healthy about 3 s after it starts: long enough to act while a batch runs.
SLOW_HEALTH = '    healthcheck: {test: ["CMD", "sleep", "2"], interval: 1s, timeout: 10s}\n'


def setup(fleet: Fleet, batch: int | str = 1, slow: bool = False) -> None:
    """Deploy 1.0.0 on every host at once, then roll `batch` hosts at a time."""
    if slow:
        compose = fleet.environments / "app/compose.yml"
        text = compose.read_text()
        compose.write_text(text.replace("    ports:", SLOW_HEALTH + "    ports:", 1))
    set_deploy(fleet, "batch: 3")
    ok(fleet.deploy("test", "--yes"))
    set_deploy(fleet, f"batch: {batch}")


def set_deploy(fleet: Fleet, settings: str) -> None:
    spec = fleet.environments / "test.yml"
    lines = [line for line in spec.read_text().splitlines() if not line.startswith("deploy:")]
    spec.write_text("\n".join([*lines, f"deploy: {{wait_timeout: 30, {settings}}}", ""]))


def set_web_tag(fleet: Fleet, tag: str) -> None:
    env = fleet.environments / "app/.env"
    text = env.read_text()
    env.write_text("\n".join(
        f"WEB_TAG={tag}" if line.startswith("WEB_TAG=") else line for line in text.splitlines()
    ) + "\n")  # fmt: skip


def webs(fleet: Fleet) -> list[str]:
    """The ID of each host's web container."""
    return [fleet.containers_on(k, "web")[0].id for k in fleet.bed.numbers]


def versions(fleet: Fleet) -> list[str]:
    return [fleet.http_on(k, "web", "/version") for k in fleet.bed.numbers]


def newest_release(fleet: Fleet) -> tuple[Any, ...]:
    newest = ok(fleet.deploy("history", "test", "--json")).json()[0]  # type: ignore[index]
    return newest["number"], newest["result"], [(h["host"], h["result"]) for h in newest["hosts"]]


def release_volumes(fleet: Fleet, k: int) -> int:
    filters = {"label": ["dev.deployer.state=release", f"dev.deployer.project={fleet.project}"]}
    return len(fleet.bed.client(k).volumes.list(filters=filters))


def read_until(process: subprocess.Popen[str], text: str) -> list[str]:
    """The lines `process` writes to stderr, up to the first that contains `text`."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never came: {lines}")


@pytest.mark.parametrize("fleet", ["unix", "ssh"], indirect=True)
def test_a_rolling_deploy_goes_host_by_host_and_records_one_release_on_every_host(
    fleet: Fleet,
) -> None:
    setup(fleet)
    before = webs(fleet)
    set_web_tag(fleet, "1.1.0")

    result = ok(fleet.deploy("test", "--yes"))

    urls = fleet.urls
    batches = [line for line in result.stderr.splitlines() if line.startswith("batch ")]
    assert batches == [f"batch {k}: {urls[k - 1]}" for k in fleet.bed.numbers]
    started = [fleet.containers_on(k, "web")[0].attrs["State"]["StartedAt"] for k in (1, 2, 3)]
    assert started == sorted(started)  # one host after the other
    assert versions(fleet) == ["1.1.0", "1.1.0", "1.1.0"]
    assert not set(webs(fleet)) & set(before)
    assert newest_release(fleet) == (2, "success", [(url, "success") for url in urls])
    assert [release_volumes(fleet, k) for k in fleet.bed.numbers] == [2, 2, 2]
    header = f"test (project {fleet.project})"
    assert ok(fleet.deploy("test", "--yes")).stdout.strip() == "\n\n".join(
        [
            *(f"{header} on {url}: in sync, nothing to change" for url in urls),
            f"{header}: 3 hosts: 3 in sync",
        ]
    )


def test_an_unhealthy_image_fails_the_first_batch_which_is_rolled_back_and_no_other_starts(
    fleet: Fleet,
) -> None:
    setup(fleet)
    before = webs(fleet)
    set_deploy(fleet, "batch: 1")
    fleet.append(
        "test.yml",
        f"services:\n  web: {{image: '{fleet.bed.node_image(REGISTRY)}/testapp-unhealthy:1.0.0'}}\n",
    )
    spec = fleet.environments / "test.yml"
    spec.write_text(spec.read_text().replace("wait_timeout: 30", "wait_timeout: 6"))

    result = fleet.deploy("test", "--yes")

    assert result.returncode == 1, result.stderr
    urls = fleet.urls
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert error.startswith(f"error: deploy of test failed on {urls[0]}: service web did not")
    assert error.endswith(f"; rolled back: {urls[0]}")
    assert webs(fleet)[1:] == before[1:]  # never touched
    assert versions(fleet) == ["1.0.0", "1.0.0", "1.0.0"]
    assert newest_release(fleet) == (
        2,
        "rolled back",
        [(urls[0], "rolled back"), (urls[1], "not started"), (urls[2], "not started")],
    )


def test_an_engine_stopped_mid_deploy_is_unknown_the_others_are_rolled_back_the_lock_released(
    fleet: Fleet,
) -> None:
    setup(fleet, slow=True)
    set_web_tag(fleet, "1.1.0")
    urls = fleet.urls

    deploy = start(fleet, "test", "--yes", new_group=True)
    read_until(deploy, "batch 2:")
    fleet.bed.stop_engine(2)
    _, stderr = deploy.communicate(timeout=120)

    assert deploy.returncode == 1, stderr
    assert f"  {urls[1]}  unknown: " in stderr, stderr
    assert f"; rolled back: {urls[0]}" in stderr
    assert [fleet.http_on(k, "web", "/version") for k in (1, 3)] == ["1.0.0", "1.0.0"]
    newest = ok(fleet.deploy("history", "test", "--json")).json()[0]  # type: ignore[index]
    assert [(h["host"], h["result"]) for h in newest["hosts"]] == [
        (urls[0], "rolled back"),
        (urls[1], "unknown"),
        (urls[2], "not started"),
    ]
    for k in (1, 3):
        markers = fleet.bed.client(k).containers.list(
            all=True, filters={"label": f"dev.deployer.project={fleet.project}"}
        )
        assert [m.name for m in markers if "lock" in m.name] == []


@pytest.mark.parametrize("fleet", ["unix", "ssh"], indirect=True)
def test_a_host_that_cannot_be_reached_fails_the_deploy_before_any_change_naming_it(
    fleet: Fleet,
) -> None:
    setup(fleet)
    before = webs(fleet)
    set_web_tag(fleet, "1.1.0")
    fleet.bed.stop_engine(2)

    refused = fleet.deploy("test", "--yes")

    assert refused.returncode == 1
    [message] = refused.stderr.splitlines()
    assert message.startswith(f"error: test: {fleet.urls[1]}: "), message
    assert message.endswith("; nothing changed on any host"), message
    assert [fleet.http_on(k, "web", "/version") for k in (1, 3)] == ["1.0.0", "1.0.0"]
    fleet.bed.start_engine(2)  # its containers stopped with it: no restart policy
    assert webs(fleet) == before  # not one container replaced, on any host


def test_of_two_deploys_at_once_one_proceeds_and_the_other_names_the_holder_and_host(
    fleet: Fleet,
) -> None:
    setup(fleet, slow=True)
    set_web_tag(fleet, "1.1.0")

    first = start(fleet, "test", "--yes", new_group=True)
    read_until(first, "batch 1:")
    second = fleet.deploy("test", "--yes")
    first.communicate(timeout=120)

    assert second.returncode == 1
    assert "test is locked: held by " in second.stderr
    assert f", on engine {sorted(fleet.urls)[0]} since " in second.stderr
    assert first.returncode == 0
    assert versions(fleet) == ["1.1.0", "1.1.0", "1.1.0"]


def test_ctrl_c_mid_rollout_leaves_every_host_running_and_the_release_says_which_were_done(
    fleet: Fleet,
) -> None:
    setup(fleet, slow=True)
    before = webs(fleet)
    set_web_tag(fleet, "1.1.0")

    urls = fleet.urls
    deploy = start(fleet, "test", "--yes", new_group=True)
    read_until(deploy, f"{urls[1]}: docker compose up")  # host 2 is being changed
    os.killpg(deploy.pid, signal.SIGINT)
    _, stderr = deploy.communicate(timeout=120)

    assert deploy.returncode == 130, stderr
    assert stderr.splitlines()[-1] == (
        f"interrupted: no further host started: {urls[0]} success, {urls[1]} success, "
        f"{urls[2]} not started"
    ), stderr
    assert versions(fleet) == ["1.1.0", "1.1.0", "1.0.0"]
    assert webs(fleet)[2] == before[2]
    assert newest_release(fleet) == (
        2,
        "interrupted",
        [(urls[0], "success"), (urls[1], "success"), (urls[2], "not started")],
    )


def test_rollback_to_a_release_restores_every_host_and_history_flags_a_diverged_host(
    fleet: Fleet,
) -> None:
    setup(fleet, batch="100%")
    set_web_tag(fleet, "1.1.0")
    ok(fleet.deploy("test", "--yes"))

    ok(fleet.deploy("rollback", "test", "--to", "1", "--yes"))

    urls = fleet.urls
    assert versions(fleet) == ["1.0.0", "1.0.0", "1.0.0"]
    assert newest_release(fleet) == (3, "success", [(url, "success") for url in urls])
    fleet.containers_on(2, "web")[0].remove(force=True)  # by hand, on one host
    history = ok(fleet.deploy("history", "test")).stdout.splitlines()
    [diverged] = [line for line in history if "DIVERGES" in line]
    assert diverged.startswith(
        f"{urls[1]} DIVERGES from release #3: web runs no container "
        f"(release: {fleet.bed.node_image(REGISTRY)}/testapp@sha256:"
    )


def test_plain_rollback_after_a_canary_and_its_follow_up_puts_every_host_back(
    fleet: Fleet,
) -> None:
    """Issue 17, 2: R1 every host on 1.0.0, R2 a canary of 1.1.0 on host 1, R3 hosts 2 and 3
    follow; `deploy rollback` goes back to before 1.1.0 on every host."""
    setup(fleet, batch="100%")
    set_web_tag(fleet, "1.1.0")
    ok(fleet.deploy("test", "--yes", "--hosts", fleet.urls[0]))
    ok(fleet.deploy("test", "--yes"))
    assert versions(fleet) == ["1.1.0", "1.1.0", "1.1.0"]

    ok(fleet.deploy("rollback", "test", "--yes"))

    assert versions(fleet) == ["1.0.0", "1.0.0", "1.0.0"]
    assert newest_release(fleet) == (4, "success", [(url, "success") for url in fleet.urls])


def test_a_host_the_chosen_release_does_not_list_is_left_as_it_is(fleet: Fleet) -> None:
    """Issue 17, 3: release 2 was deployed to host 1 only; rolling host 2 back to it changes
    nothing there (never the current spec) and says so."""
    setup(fleet, batch="100%")
    set_web_tag(fleet, "1.1.0")
    ok(fleet.deploy("test", "--yes", "--hosts", fleet.urls[0]))
    set_web_tag(fleet, "2.0.0")  # the spec moves on
    before = webs(fleet)

    result = fleet.deploy("rollback", "test", "--to", "2", "--hosts", fleet.urls[1], "--yes")

    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"error: release 2 lists none of {fleet.urls[1]} (it lists {fleet.urls[0]}): "
        "nothing to roll back; nothing changed"
    ]
    assert webs(fleet) == before
    assert versions(fleet) == ["1.1.0", "1.0.0", "1.0.0"]
    assert newest_release(fleet)[:2] == (2, "success")
