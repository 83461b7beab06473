"""Which target an environment runs on, as its spec says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from deployer.core.spec import SWARM
from deployer.infra.engine import Engine
from deployer.targets.base import Environment, Target
from deployer.targets.fleet.target import FleetTarget
from deployer.targets.host.target import ComposeTarget
from deployer.targets.hosts import selected
from deployer.targets.swarm.target import SwarmTarget


def target_of(env: Environment, environ: Mapping[str, str], hosts: Sequence[str] = ()) -> Target:  # type: ignore[type-arg]
    """The target of `env`: a swarm (`engine.orchestrator: swarm`), several hosts
    (`engine.hosts`), or one engine. `hosts` (`--hosts`) limits it to some of its hosts. Nothing
    is reached yet."""
    spec = env.spec
    urls = spec.engine_hosts or (spec.engine_host,)
    every = [Engine.choose(url, environ) for url in urls]
    chosen = selected(every, hosts, spec.name)
    if spec.orchestrator == SWARM:
        return SwarmTarget(env, chosen[0])
    if spec.engine_hosts is None:
        return ComposeTarget(env, chosen[0])
    parts = {engine.host: ComposeTarget(env, engine) for engine in every}
    return FleetTarget(env, list(parts.values()), [parts[engine.host] for engine in chosen])
