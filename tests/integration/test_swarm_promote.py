"""`deploy promote` from and to swarm environments, on the bed's real swarm (dh4, dh5 managers,
dh6 worker): the exact images are the digests the source's services pin."""

from __future__ import annotations

import pytest

from tests.integration.conftest import REGISTRY, SwarmSpace, ok

pytestmark = pytest.mark.integration


def add_production(stack: SwarmSpace) -> str:
    """`production`, a second stack on the same swarm with the same compose file but web at
    1.1.0; returns its project (its stack and state are removed afterwards by the caller)."""
    project = f"{stack.project}-prod"
    stack.other_projects.append(project)
    node_registry = stack.swarm.node_image(REGISTRY)
    stack.write("app/production.env", f"REGISTRY={node_registry}\nWEB_TAG=1.1.0\nLOG_LEVEL=info\n")
    stack.write(
        "production.yml",
        f"project: {project}\ncompose_files: [app/compose.yml]\n"
        "env_files: [app/production.env]\n"
        f"engine: {{host: '{stack.swarm.manager_urls[0]}', orchestrator: swarm}}\n",
    )
    return project


def test_promote_pins_the_digests_a_swarm_runs_into_a_swarm_environment(stack: SwarmSpace) -> None:
    project = add_production(stack)
    try:
        ok(stack.deploy("test", "--yes"))
        on_swarm = {
            name: s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            for name, s in stack.services().items()
        }
        node_registry = stack.swarm.node_image(REGISTRY)
        assert on_swarm["web"].startswith(f"{node_registry}/testapp:1.0.0@sha256:")

        promoted = ok(stack.deploy("promote", "test", "production", "--yes", "--json")).json()

        assert isinstance(promoted, dict)
        assert promoted["services"] == [
            {
                "service": "web",
                "before": f"{node_registry}/testapp:1.1.0",
                "pinned": on_swarm["web"],
                "source_release": 1,
            },
            {
                "service": "worker",
                "before": f"{node_registry}/testapp:1.0.0",
                "pinned": on_swarm["worker"],
                "source_release": 1,
            },
        ]
        text = (stack.environments / "production.yml").read_text()
        assert f"    image: {on_swarm['web']}\n" in text
        assert "x-promoted-from:\n  environment: test\n  release: 1\n" in text
        audit = ok(stack.deploy("audit", "production", "--json")).json()
        assert isinstance(audit, list)
        assert [(e["command"], e["changes"]) for e in audit] == [
            (
                "promote from test release 1",
                [
                    f"web: {node_registry}/testapp:1.1.0 -> {on_swarm['web']}",
                    f"worker: {node_registry}/testapp:1.0.0 -> {on_swarm['worker']}",
                ],
            )
        ]

        # production, deployed, runs the very digests test runs.
        ok(stack.deploy("production", "--yes"))
        manager = stack.swarm.client(4)
        for name, image in on_swarm.items():
            service = manager.api.inspect_service(f"{project}_{name}")
            assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == image
    finally:
        remove_stack(stack, project)


def test_promote_from_a_swarm_that_is_not_in_sync_is_refused_and_writes_nothing(
    stack: SwarmSpace,
) -> None:
    add_production(stack)
    ok(stack.deploy("test", "--yes"))
    before = (stack.environments / "production.yml").read_text()
    stack.write(
        "app/.env",
        f"REGISTRY={stack.swarm.node_image(REGISTRY)}\nWEB_TAG=1.1.0\nLOG_LEVEL=info\n",
    )

    refused = stack.deploy("promote", "test", "production", "--yes")

    assert refused.returncode == 1
    assert refused.stderr == (
        "error: cannot promote test to production: test is not in sync with its spec "
        "(`deploy diff test` shows how)\n"
    )
    assert (stack.environments / "production.yml").read_text() == before


def remove_stack(stack: SwarmSpace, project: str) -> None:
    """Another stack of the test's, as the fixture removes its own."""
    own = stack.project
    stack.project = project
    try:
        stack.remove_stack()
    finally:
        stack.project = own
