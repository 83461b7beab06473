"""`deploy promote`: production's spec pinned to the exact images staging runs, on the real engine."""

from __future__ import annotations

import pytest

from tests.integration.conftest import REGISTRY, Workspace, ok

pytestmark = pytest.mark.integration

COMMENTED = """\
# yaml-language-server: $schema=../schemas/environment.schema.json
# The shop as customers see it.
project: {project}
compose_files: [shop/compose.yml]
env_files: [shop/.env, shop/.env.production]
secrets: [DB_PASSWORD]
services:
  # the front: the only service with a tag of its own
  web:
    tag: "1.0.0"  # what staging ran last week
    replicas: 1

deploy:
  confirm: true   # production asks
  wait_timeout: 120
"""


def commented_production(example: Workspace) -> str:
    """production.yml with comments around what promote edits; returns its text."""
    path = example.environments / "production.yml"
    project = next(
        line.split(": ")[1] for line in path.read_text().splitlines() if line.startswith("project")
    )
    text = COMMENTED.format(project=project)
    path.write_text(text)
    return text


def image_ids(example: Workspace, project: str) -> dict[str, str]:
    containers = example.engine.containers.list(
        filters={"label": f"com.docker.compose.project={project}"}, ignore_removed=True
    )
    return {c.labels["com.docker.compose.service"]: c.image.id for c in containers}


def test_promote_pins_what_staging_runs_and_production_then_runs_the_same_images(
    example: Workspace,
) -> None:
    before = commented_production(example)
    ok(example.deploy("staging", "--yes"))
    ok(example.deploy("production", "--yes"))

    promoted = ok(example.deploy("promote", "staging", "production", "--yes", "--json")).json()

    assert isinstance(promoted, dict)
    pinned = {p["service"]: p["pinned"] for p in promoted["services"]}
    assert pinned["web"].startswith(f"{REGISTRY}/shop-web:1.1.0@sha256:")
    assert pinned["worker"].startswith(f"{REGISTRY}/shop-worker:1.0.0@sha256:")
    assert promoted["services"] == [
        {
            "service": "web",
            "before": f"{REGISTRY}/shop-web:1.0.0",
            "pinned": pinned["web"],
            "source_release": 1,
        },
        {
            "service": "worker",
            "before": f"{REGISTRY}/shop-worker:1.0.0",
            "pinned": pinned["worker"],
            "source_release": 1,
        },
    ]
    assert (promoted["source"], promoted["target"], promoted["written"]) == (
        "staging",
        "production",
        True,
    )
    # Only the pinned lines changed or were added: every comment and blank line is kept.
    expected = before.replace('tag: "1.0.0"', f'image: "{pinned["web"]}"').replace(
        "    replicas: 1\n",
        f"    replicas: 1\n  worker:\n    image: {pinned['worker']}\n",
    )
    expected += "x-promoted-from:\n  environment: staging\n  release: 1\n"
    assert (example.environments / "production.yml").read_text() == expected

    ok(example.deploy("validate", "production"))
    diff = example.deploy("diff", "production")
    assert diff.returncode == 2, diff.stderr
    assert pinned["web"] in diff.stdout

    ok(example.deploy("production", "--yes"))
    production = f"{example.project}-production"
    assert image_ids(example, production) == image_ids(example, example.project)
    history = ok(example.deploy("history", "production")).stdout
    newest = history.splitlines()[1:3]
    assert newest[0].startswith("#2 ")
    assert newest[1] == "    promoted from staging #1"
    audit = ok(example.deploy("audit", "production")).stdout
    assert "promote from staging release 1" in audit

    again = ok(example.deploy("promote", "staging", "production", "--yes"))
    assert (
        again.stdout
        == "environments/production.yml already pins what staging #1 runs: nothing to write\n"
    )


def test_promote_from_a_staging_out_of_sync_is_refused(example: Workspace) -> None:
    ok(example.deploy("staging", "--yes"))
    staging = example.environments / "staging.yml"
    staging.write_text(staging.read_text().replace('tag: "1.1.0"', 'tag: "1.0.0"'))
    production = (example.environments / "production.yml").read_text()

    result = example.deploy("promote", "staging", "production", "--yes")

    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "error: cannot promote staging to production: staging is not in sync with its spec "
        "(`deploy diff staging` shows how)\n",
    )
    assert (example.environments / "production.yml").read_text() == production


def test_promote_from_an_unhealthy_staging_is_refused(example: Workspace) -> None:
    # The worker runs an image whose health check fails; the deploy leaves it so.
    staging = example.environments / "staging.yml"
    staging.write_text(
        staging.read_text()
        .replace(
            "    replicas: 2\n", f"    replicas: 2\n    image: {REGISTRY}/testapp-unhealthy:1.0.0\n"
        )
        .replace("wait_timeout: 60", "wait_timeout: 5\n  on_failure: stop")
    )
    assert example.deploy("staging", "--yes").returncode == 1

    result = example.deploy("promote", "staging", "production", "--yes")

    assert (result.returncode, result.stderr) == (
        1,
        "error: cannot promote staging to production: staging is not healthy: worker "
        "(see `deploy status staging`)\n",
    )


def test_promote_refuses_undeclared_services_other_repositories_and_unusual_yaml(
    example: Workspace,
) -> None:
    same = example.deploy("promote", "staging", "staging")
    assert (same.returncode, same.stderr) == (
        1,
        "error: cannot promote staging to staging: they are the same environment\n",
    )
    ok(example.deploy("staging", "--yes"))
    unknown = example.deploy("promote", "staging", "production", "--services", "web,nope")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "error: cannot promote staging to production: staging has no service nope\n",
    )
    path = example.environments / "production.yml"
    original = path.read_text()
    unconfirmed = example.deploy("promote", "staging", "production")
    assert (unconfirmed.returncode, unconfirmed.stderr) == (
        1,
        "error: production asks for confirmation and there is no terminal to ask on: pass --yes\n",
    )
    assert unconfirmed.stdout.startswith("promote staging #1 -> production: ")
    assert path.read_text() == original
    example.write(
        "shop/web-only.yml",
        "services:\n  web:\n    image: ${IMAGE_REGISTRY}/testapp:1.0.0\n",
    )
    path.write_text(original.replace("shop/compose.yml", "shop/web-only.yml"))
    production = path.read_text()

    undeclared = example.deploy("promote", "staging", "production", "--yes")
    assert (undeclared.returncode, undeclared.stderr) == (
        1,
        "error: cannot promote staging to production: production does not declare worker "
        "(its compose files have no such service)\n",
    )
    other = example.deploy("promote", "staging", "production", "--services", "web", "--yes")
    assert (other.returncode, other.stderr) == (
        1,
        f"error: cannot promote staging to production: web comes from {REGISTRY}/shop-web on "
        f"staging but from {REGISTRY}/testapp on the target\n",
    )
    assert path.read_text() == production

    flow = production.replace("shop/web-only.yml", "shop/compose.yml").replace(
        'services:\n  web:\n    tag: "1.0.0"\n    replicas: 1\n',
        'services: {web: {tag: "1.0.0", replicas: 1}}\n',
    )
    assert flow != production
    path.write_text(flow)
    refused = example.deploy("promote", "staging", "production", "--services", "web", "--yes")
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert lines[0] == (
        "error: environments/production.yml: cannot be edited safely (services is a flow-style "
        "mapping ({...})); nothing written. Add these lines by hand, in place of the services' "
        "`image:` or `tag:`:"
    )
    assert lines[1:3] == ["error:   services:", "error:     web:"]
    assert lines[3].startswith(f"error:       image: {REGISTRY}/shop-web:1.1.0@sha256:")
    assert lines[4:] == [
        "error:   x-promoted-from:",
        "error:     environment: staging",
        "error:     release: 1",
    ]
    assert path.read_text() == flow


def test_promote_then_deploy_recreates_nothing_whose_image_is_unchanged(
    example: Workspace,
) -> None:
    # web depends on worker: `up web` makes Compose converge worker too, by its config hash.
    compose = example.environments / "shop" / "compose.yml"
    compose.write_text(
        compose.read_text().replace(
            "    restart: unless-stopped\n  worker:",
            "    restart: unless-stopped\n    depends_on: [worker]\n  worker:",
        )
    )
    ok(example.deploy("staging", "--yes"))
    ok(example.deploy("production", "--yes"))
    production = f"{example.project}-production"
    before = container_ids(example, production)

    promoted = ok(example.deploy("promote", "staging", "production", "--yes", "--json")).json()
    assert isinstance(promoted, dict)
    pinned = {p["service"]: p["pinned"] for p in promoted["services"]}
    pending = example.deploy("diff", "production", "--json")
    ok(example.deploy("production", "--yes"))
    after = container_ids(example, production)
    in_sync = example.deploy("diff", "production")

    assert pending.returncode == 2, pending.stderr
    document = pending.json()
    assert isinstance(document, dict)
    assert document["changes"] == [
        {
            "service": "web",
            "action": "recreate",
            "causes": [f"image {REGISTRY}/shop-web:1.0.0 -> {pinned['web']}"],
            "order": "stop-first",
            "order_reason": "default order",
        }
    ]
    assert after["worker"] == before["worker"]
    assert after["web"] != before["web"]
    assert (in_sync.returncode, in_sync.stderr) == (0, "")


def container_ids(example: Workspace, project: str) -> dict[str, list[str]]:
    containers = example.engine.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}, ignore_removed=True
    )
    ids: dict[str, list[str]] = {}
    for container in containers:
        ids.setdefault(container.labels["com.docker.compose.service"], []).append(container.id)
    return {service: sorted(found) for service, found in ids.items()}


def test_promote_to_an_unreachable_target_engine_writes_nothing(example: Workspace) -> None:
    ok(example.deploy("staging", "--yes"))
    path = example.environments / "production.yml"
    # An engine that does not answer: no daemon listens on this socket.
    socket = example.root / "stopped-engine.sock"
    path.write_text(path.read_text() + f"engine: {{host: 'unix://{socket}'}}\n")
    original = path.read_bytes()

    result = example.deploy("promote", "staging", "production", "--yes")

    assert (result.returncode, path.read_bytes()) == (1, original)
    assert result.stderr.startswith(f"error: Docker engine at unix://{socket} is unreachable: ")
    assert result.stderr.endswith("; nothing written\n")
    assert len(result.stderr.splitlines()) == 1
