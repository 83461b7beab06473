"""deployer's state on a swarm (deployer/swarm_state.py), on the bed's real swarm: releases, audit
entries and the lock are swarm configs, so that what is written through one manager (dh4: the
environment `test`) is read through the other (dh5: the environment `other`, the same project).
The `stack` fixture removes the configs of its projects afterwards, whatever the test did."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from deployer.commands.load import load
from deployer.core.variables import Redactor
from deployer.infra.engine import Engine, EngineClient
from deployer.state import releases
from deployer.state.lock import Lock
from deployer.state.store import Actor
from deployer.state.swarm_store import SwarmStore, config_name
from deployer.targets.base import Environment
from tests.integration.conftest import REGISTRY, STATE_PROJECT_LABEL, SwarmSpace

pytestmark = pytest.mark.integration

ALICE = Actor("alice", "laptop", 4242)
IMAGE_ID = "sha256:" + "ab" * 32
DIGEST = "sha256:" + "cd" * 32


def second_manager(stack: SwarmSpace, name: str = "other", project: str | None = None) -> str:
    """An environment of the stack's project (or `project`) through manager dh5."""
    stack.write(
        f"{name}.yml",
        f"project: {project or stack.project}\ncompose_files: [app/compose.yml]\n"
        f"env_files: [app/.env]\nengine: {{host: '{stack.swarm.manager_urls[1]}', "
        "orchestrator: swarm}\n",
    )
    return name


def loaded(stack: SwarmSpace, name: str) -> Environment:
    return load(stack.environments, name, Redactor()).env


def store_of(stack: SwarmSpace, name: str) -> SwarmStore:
    """The store of environment `name`, through the manager its spec names."""
    return SwarmStore(
        EngineClient(Engine(loaded(stack, name).spec.engine_host or "")), stack.project
    )


def state_configs(stack: SwarmSpace, k: int, project: str) -> list[tuple[str, dict[str, str]]]:
    """The swarm's configs of `project`'s state, as manager dhK lists them: name and labels."""
    found = stack.swarm.client(k).configs.list(
        filters={"label": f"{STATE_PROJECT_LABEL}={project}"}
    )
    return sorted((c.name, c.attrs["Spec"]["Labels"]) for c in found)


def lock_json(stack: SwarmSpace, name: str) -> dict[str, Any]:
    shown = stack.deploy("lock", "status", name, "--json")
    assert shown.returncode == 0, shown.stderr
    document = shown.json()
    assert isinstance(document, dict)
    return document


def test_releases_recorded_through_either_manager_are_one_history_that_stack_rm_leaves(
    stack: SwarmSpace,
) -> None:
    other = second_manager(stack)
    through_dh4, through_dh5 = store_of(stack, "test"), store_of(stack, other)
    spec, variables = loaded(stack, "test").spec, loaded(stack, "test").variables
    image = f"{stack.swarm.node_image(REGISTRY)}/testapp:1.0.0"
    web = releases.ServiceRelease(image, IMAGE_ID, f"{image.partition(':1.0.0')[0]}@{DIGEST}")

    first = releases.record(
        through_dh4, ALICE, "deploy test", "success", spec, variables, {"web": web}, ["web create"]
    )
    second = releases.record(
        through_dh5, ALICE, "deploy other", "failed", spec, variables, {"web": web}, ["web update"]
    )

    # Numbers are claimed on the swarm: #2 exists for dh4 too, whichever manager wrote it.
    assert (first.number, second.number) == (1, 2)
    assert through_dh4.add("release", "000002", first.record()) is False
    expected = [
        f"#2  {second.time}  alice@laptop  failed  (deploy other)",
        f"    web: {image} (abababababab)",
        "    changed: web update",
        f"#1  {first.time}  alice@laptop  success  (deploy test)",
        f"    web: {image} (abababababab)",
        "    changed: web create",
    ]
    for name in ("test", other):
        shown = stack.deploy("history", name)
        assert (shown.returncode, shown.stdout.splitlines(), shown.stderr) == (
            0,
            [f"{name}: 2 releases, newest first", *expected],
            "",
        )
    # deployer's labels only, none of the stack's: `docker stack rm` leaves the history.
    labels = {"dev.deployer.state": "release", "dev.deployer.project": stack.project}
    assert state_configs(stack, 5, stack.project) == [
        (f"deployer_{stack.project}_release_000001", labels),
        (f"deployer_{stack.project}_release_000002", labels),
    ]
    stack.stack_deploy()
    stack.remove_stack()
    assert stack.deploy("history", other).stdout.splitlines()[1:] == expected


def test_a_deploy_through_one_manager_is_in_the_history_and_audit_read_through_the_other(
    stack: SwarmSpace,
) -> None:
    other = second_manager(stack)

    deployed = stack.deploy("test", "--yes")

    assert deployed.returncode == 0, deployed.stderr
    shown = stack.deploy("history", other, "--json")
    assert shown.returncode == 0, shown.stderr
    history = shown.json()
    assert isinstance(history, list)
    repository = f"{stack.swarm.node_image(REGISTRY)}/testapp"
    assert [
        (r["number"], r["result"], r["command"], {n: s["image"] for n, s in r["services"].items()})
        for r in history
    ] == [
        (
            1,
            "success",
            "deploy test",
            {"web": f"{repository}:1.0.0", "worker": f"{repository}:1.0.0"},
        )
    ]
    assert {s["pinned"].partition("@sha256:")[0] for s in history[0]["services"].values()} == {
        repository
    }
    audit = stack.deploy("audit", other, "--json").json()
    assert isinstance(audit, list)
    assert [(e["command"], e["result"]) for e in audit] == [("deploy test", "success")]
    # The deploy's lock went with it: what stays is the release and the audit entry.
    kinds = [labels["dev.deployer.state"] for _, labels in state_configs(stack, 5, stack.project)]
    assert sorted(kinds) == ["audit", "release"]


def test_a_lock_taken_through_one_manager_holds_through_the_other_and_both_read_the_audit(
    stack: SwarmSpace,
) -> None:
    other = second_manager(stack)

    taken = stack.deploy("lock", "acquire", "test", "--reason", "db migration", "--ttl", "3600")
    assert (taken.returncode, taken.stderr) == (0, "")
    lock = lock_json(stack, "test")["lock"]
    holder = f"{lock['holder']} on {lock['host']} (pid {lock['pid']})"
    assert lock_json(stack, other)["lock"] == lock

    shown = stack.deploy("lock", "status", other)
    assert (shown.returncode, shown.stdout, shown.stderr) == (
        0,
        f"other: locked by {holder} since {lock['since']}: db migration\n"
        f"  kind manual, expires {lock['expires']}; held\n",
        "",
    )
    refused = stack.deploy("lock", "acquire", other, "--reason", "release 2.0")
    refusal = (
        f"other is locked: held by {holder} since {lock['since']} (db migration). "
        "Wait with --lock-wait SECONDS"
    )
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", f"error: {refusal}\n")

    released = stack.deploy("lock", "release", other)
    assert (released.returncode, released.stdout) == (
        0,
        f"released the lock of other held by {holder}\n",
    )
    assert stack.deploy("lock", "status", "test").stdout == "test: not locked\n"

    for name in ("test", other):
        audit = stack.deploy("audit", name, "--json")
        assert audit.returncode == 0, audit.stderr
        entries = audit.json()
        assert isinstance(entries, list)
        assert [(e["environment"], e["command"], e["result"], e["error"]) for e in entries] == [
            ("test", "lock acquire --reason 'db migration'", "success", ""),
            ("other", "lock acquire --reason 'release 2.0'", "refused", refusal),
            ("other", "lock release", "success", f"released the lock of {holder}"),
        ]


def claim_at_once(store: SwarmStore, lock: Lock, together: threading.Barrier) -> bool:
    """Claim the lock once every party of `together` is ready to."""
    together.wait()
    return store.claim_lock(lock.record())


def test_two_claims_at_the_same_moment_through_the_two_managers_leave_exactly_one_holder(
    stack: SwarmSpace,
) -> None:
    other = second_manager(stack)
    stores = [store_of(stack, "test"), store_of(stack, other)]
    for _ in range(5):
        locks = [
            Lock.new(ALICE, f"claim through {name}", "process", 600.0) for name in ("dh4", "dh5")
        ]
        together = threading.Barrier(2)
        with ThreadPoolExecutor(max_workers=2) as pool:
            won = list(pool.map(claim_at_once, stores, locks, [together] * 2))

        assert sorted(won) == [False, True]
        winner = locks[won.index(True)]
        held = [store.lock() for store in stores]  # through dh4, through dh5
        assert held[0] is not None
        assert [(h.id, h.record) if h else None for h in held] == [
            (held[0].id, winner.record())
        ] * 2
        stores[won.index(False)].remove_lock(held[0].id, winner.token)  # by the loser's manager
        assert [store.lock() for store in stores] == [None, None]


def test_a_deploys_lock_taken_through_one_manager_is_broken_through_the_other_only_with_force(
    stack: SwarmSpace,
) -> None:
    other = second_manager(stack)
    deploying = Lock.new(ALICE, "deploy test", "process", 600.0)
    assert store_of(stack, "test").claim_lock(deploying.record()) is True

    kept = stack.deploy("lock", "release", other)
    assert (kept.returncode, kept.stdout, kept.stderr) == (
        1,
        "",
        "error: the lock of other is held by a deploy of alice on laptop (pid 4242) (its deploy "
        "is running); break it with `deploy lock release other --force`\n",
    )
    broken = stack.deploy("lock", "release", other, "--force")
    assert (broken.returncode, broken.stdout, broken.stderr) == (
        0,
        "released the lock of other held by alice on laptop (pid 4242)\n",
        "",
    )
    assert store_of(stack, "test").lock() is None


def test_a_long_project_name_keeps_its_state_under_shortened_names(stack: SwarmSpace) -> None:
    project = f"{stack.project}-{'x' * 50}"  # 63 characters: past 64 with deployer's prefix
    stack.other_projects.append(project)
    second_manager(stack, "long", project)
    through_dh5 = SwarmStore(EngineClient(Engine(stack.swarm.manager_urls[1])), project)

    taken = stack.deploy("lock", "acquire", "long", "--reason", "db migration")
    assert (taken.returncode, taken.stderr) == (0, "")
    held = through_dh5.lock()
    assert held is not None
    through_dh5.renew_lock(str(held.record["token"]), 1)

    names = {name for name, _ in state_configs(stack, 4, project)}
    renewal = config_name(project, "lock", str(held.record["token"]), "renewed", "1")
    assert len(names) == 3 and {config_name(project, "lock"), renewal} < names  # and the audit's
    assert {(len(name), name[:48]) for name in names} == {(64, f"deployer_{project[:38]}_")}
    renewed = through_dh5.lock()
    assert renewed is not None
    assert (renewed.id, renewed.since) == (held.id, held.since)
    assert renewed.renewed > held.renewed == held.since
    released = stack.deploy("lock", "release", "long")
    assert released.returncode == 0, released.stderr
    audit = stack.deploy("audit", "long", "--json").json()
    assert isinstance(audit, list)
    assert [e["command"] for e in audit] == [
        "lock acquire --reason 'db migration'",
        "lock release",
    ]
    assert len(state_configs(stack, 5, project)) == 2  # the lock and its renewal went


@pytest.mark.parametrize("command", [["history"], ["audit"], ["lock", "status"]])
def test_state_through_a_swarm_worker_is_one_line_saying_it_is_not_a_manager(
    stack: SwarmSpace, command: list[str]
) -> None:
    url = stack.swarm.bed.unix(6)
    stack.write(
        "test.yml",
        f"project: {stack.project}\ncompose_files: [app/compose.yml]\n"
        f"engine: {{host: '{url}', orchestrator: swarm}}\n",
    )
    result = stack.deploy(*command, "test")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"error: {url} is not a swarm manager, it is a swarm worker: name a manager in engine.host "
        "(or make this engine one: docker swarm init)\n",
    )
