"""deployer: a declarative environment deployer for Docker hosts.

The data flow, the same for every target: spec -> variables -> desired -> observed -> plan ->
apply -> report. Layers, top down: cli, commands, targets (host, fleet, swarm), compose, state,
infra, core (README, "Layout").
"""

__version__ = "0.1.0"
