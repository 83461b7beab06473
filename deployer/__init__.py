"""deployer: a declarative environment deployer for Docker hosts.

The data flow, one module a stage: spec -> variables -> desired -> observed -> plan -> apply -> report.
"""

__version__ = "0.1.0"
