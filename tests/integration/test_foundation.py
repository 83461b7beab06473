"""The test bed itself: images pulled from the local registry start and serve what they should."""

from __future__ import annotations

import pytest

from tests.integration.conftest import REGISTRY, Workspace

pytestmark = pytest.mark.integration


def test_deploy_pulls_from_the_local_registry_and_serves_the_tag(app: Workspace) -> None:
    assert app.engine.images.list(name=f"{REGISTRY}/testapp") == []

    result = app.deploy("test", "--yes")

    assert result.returncode == 0, result.stderr
    assert [c.name for c in app.containers()] == [f"{app.project}-web-1", f"{app.project}-worker-1"]
    assert app.http("web", "/version") == "1.0.0"
    assert app.http("web", "/health") == "ok"
    pulled = {
        t for i in app.engine.api.images() for t in i["RepoTags"] or [] if t.startswith(REGISTRY)
    }
    assert pulled == {f"{REGISTRY}/testapp:1.0.0"}


def test_image_health_check_reports_healthy(app: Workspace) -> None:
    result = app.deploy("test", "--yes")

    assert result.returncode == 0, result.stderr
    for container in app.containers():
        container.reload()
        assert container.attrs["State"]["Health"]["Status"] == "healthy"
