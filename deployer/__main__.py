"""The `deploy` command (and `python -m deployer`): the CLI, with the cyclic garbage collector
out of the way of start-up and exit.

Importing deployer, typer and the Docker SDK makes some hundred thousand objects and no garbage:
the collector would go over them again and again while modules import, and all of them once
more as the interpreter ends, about 80 ms of every command on this project's machine
(docs/performance.md). So it is off during the imports, what they made is frozen out of its
reach (gc.freeze), and it runs as usual for the command itself (a deploy waiting for health, a
`logs --follow`); what is alive when the command ends is frozen too, as the process ends.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    from deployer.cli import main as command

    gc.freeze()
    gc.enable()
    try:
        command()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
