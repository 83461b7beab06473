"""Which target an environment runs on, as its spec says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deployer.core.spec import SWARM
from deployer.infra.engine import Engine
from deployer.targets.base import Environment, Target
from deployer.targets.hosts import selected


def target_of(
    env: Environment, environ: Mapping[str, str], hosts: Sequence[str] = ()
) -> Target[Any, Any]:
    """The target of `env`: a swarm (`engine.orchestrator: swarm`), several hosts
    (`engine.hosts`), or one engine. `hosts` (`--hosts`) limits it to some of its hosts. Nothing
    is reached yet. Only the chosen target's modules are imported: a command pays for no other."""
    spec = env.spec
    urls = spec.engine_hosts or (spec.engine_host,)
    every = [Engine.choose(url, environ) for url in urls]
    chosen = selected(every, hosts, spec.name)
    if spec.orchestrator == SWARM:
        from deployer.targets.swarm.target import SwarmTarget

        return SwarmTarget(env, chosen[0])
    from deployer.targets.host.target import HostTarget

    if spec.engine_hosts is None:
        return HostTarget(env, chosen[0])
    from deployer.targets.fleet.target import FleetTarget

    parts = {engine.host: HostTarget(env, engine) for engine in every}
    return FleetTarget(env, list(parts.values()), [parts[engine.host] for engine in chosen])
