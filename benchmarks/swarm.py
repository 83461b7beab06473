"""Benchmark: a no-op `deploy diff ENV` on a swarm against `docker stack deploy` of the same file.

On the bed's swarm (scripts/test-hosts swarm: dh4, dh5 managers, dh6 worker), a stack of
--services services (one replica each of the busybox test app, sleeping) is deployed once with
`docker stack deploy` of deployer's converted file (the invocation `deploy render ENV --json`
gives, from deployer.commands.spec.render). Then, in the same run, --runs times each (median, min):
  - `deploy diff ENV`, the deployer CLI as a user runs it, with nothing to change (exit 0);
  - a no-op `deploy ENV --yes` (in sync: no lock, no stack deploy);
  - `docker stack deploy` of that same file, the real CLI, with nothing to change either;
and counts the services whose Version.Index each run moved: stack deploy updates every service
of its file, deployer's no-ops touch none. The stack is removed at the end, even on failure.

Needs scripts/test-engine and the package installed; leases the bed (released at the end,
`down` only when no other session uses it):
    .venv/bin/python benchmarks/swarm.py [--services 50] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from reconcile import IMAGE, sh, timed, write_environment  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
BED = ROOT / "scripts" / "test-hosts"
REGISTRY = "127.0.0.1:5000/deployer-bench"
NODE_IMAGE = IMAGE.replace("127.0.0.1:5000", "10.213.0.1:5000")  # the same, through the bridge
MANAGER = "unix:///run/dh4/docker.sock"
DEPLOY = [sys.executable, "-m", "deployer"]
CONVERGE_SECONDS = 600  # 50 pulls and starts on the three nodes of a 2-core machine


def write_swarm_environment(folder: Path, project: str, size: int) -> None:
    """reconcile.py's environment of `size` services, pulled by the nodes, on the swarm."""
    write_environment(folder, project, size)
    compose = folder / "compose.yml"
    compose.write_text(compose.read_text().replace(IMAGE, NODE_IMAGE))
    (folder / "bench.yml").write_text(
        f"project: {project}\ncompose_files: [compose.yml]\nenv_files: [.env]\n"
        f"engine: {{host: '{MANAGER}', orchestrator: swarm}}\n"
    )


def docker(*args: str) -> list[str]:
    return ["docker", "-H", MANAGER, *args]


def versions(project: str) -> dict[str, int]:
    """Each service of the stack's Version.Index, by name."""
    label = f"label=com.docker.stack.namespace={project}"
    ids = sh(docker("service", "ls", "-q", "--filter", label)).split()
    if not ids:
        return {}
    lines = sh(docker("service", "inspect", "--format", "{{.Spec.Name}} {{.Version.Index}}", *ids))
    return {name: int(index) for name, index in (line.split() for line in lines.splitlines())}


def converged(project: str, size: int) -> bool:
    label = f"label=com.docker.stack.namespace={project}"
    replicas = sh(docker("service", "ls", "--filter", label, "--format", "{{.Replicas}}")).split()
    return len(replicas) == size and all(r == "1/1" for r in replicas)


def remove(project: str) -> None:
    """`docker stack rm`, then wait until its services and networks are gone."""
    sh(docker("stack", "rm", project), check=False)
    label = f"label=com.docker.stack.namespace={project}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        services = sh(docker("service", "ls", "-q", "--filter", label), check=False).split()
        networks = sh(docker("network", "ls", "-q", "--filter", label), check=False).split()
        if not services and not networks:
            return
        time.sleep(0.5)
    print(f"warning: the stack {project} is not gone after 120 s", file=sys.stderr)


def moved(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(1 for name, index in after.items() if before.get(name) != index)


def measured(
    commands: dict[str, tuple[list[str], dict[str, str], str | None]], project: str, runs: int
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Each command's seconds, run by run, and how many services each run updated. The commands
    take turns within each run, so that the machine's load weighs on them alike."""
    seconds: dict[str, list[float]] = {key: [] for key in commands}
    updated: dict[str, list[int]] = {key: [] for key in commands}
    for _ in range(runs):
        for key, (argv, env, stdin) in commands.items():
            before = versions(project)
            seconds[key].append(timed(argv, env, stdin))
            updated[key].append(moved(before, versions(project)))
    return seconds, updated


def bench(size: int, runs: int) -> dict[str, Any]:
    project = f"bench-swarm-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_swarm_environment(folder, project, size)
        env = {"DEPLOYER_ENVIRONMENTS": str(folder)}
        try:
            rendered = json.loads(sh([*DEPLOY, "render", "bench", "--json"], env))
            stack_deploy = (list(rendered["argv"]), dict(rendered["env"]), rendered["stdin"])
            started = time.monotonic()
            sh(*stack_deploy)
            while not converged(project, size):
                if time.monotonic() - started > CONVERGE_SECONDS:
                    raise SystemExit(f"the stack {project} did not converge")
                time.sleep(1)
            deployed_s = time.monotonic() - started
            in_sync = json.loads(sh([*DEPLOY, "diff", "bench", "--json"], env))
            assert in_sync["in_sync"], in_sync

            seconds, updated = measured(
                {
                    "noop_diff": ([*DEPLOY, "diff", "bench"], env, None),
                    "noop_deploy": ([*DEPLOY, "bench", "--yes"], env, None),
                    "stack_deploy": stack_deploy,
                },
                project,
                runs,
            )
            still = json.loads(sh([*DEPLOY, "diff", "bench", "--json"], env))
        finally:
            remove(project)
    return {
        "services": size,
        "runs": runs,
        "first_deploy_converged_s": round(deployed_s, 1),
        **{
            f"{key}_{figure}_s": round(measure(values), 3)
            for key, values in seconds.items()
            for figure, measure in (("median", statistics.median), ("min", min))
        },
        "ratio_median": round(
            statistics.median(seconds["noop_diff"]) / statistics.median(seconds["stack_deploy"]), 2
        ),
        **{f"services_updated_per_{key}": values for key, values in updated.items()},
        "in_sync_after": still["in_sync"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "swarm.json"
    )
    args = parser.parse_args()
    sh([str(ROOT / "scripts" / "build-images"), REGISTRY, "testapp:1.0.0"])
    lease = str(os.getpid())  # a living process: the bed stays up while it runs
    sh([str(BED), "lease", lease, "3"])
    try:
        sh([str(BED), "swarm"])
        result = bench(args.services, args.runs)
    finally:
        sh([str(BED), "release", lease], check=False)
    print(json.dumps(result), file=sys.stderr)
    print(f"{'measure (' + str(result['services']) + ' services)':<36}{'median':>9}{'min':>9}")
    for key, label in (
        ("noop_diff", "no-op deploy diff ENV"),
        ("noop_deploy", "no-op deploy ENV --yes"),
        ("stack_deploy", "docker stack deploy (same file)"),
    ):
        print(
            f"{label:<36}{result[f'{key}_median_s']:>8.3f}s{result[f'{key}_min_s']:>8.3f}s"
            f"   services updated per run: {result[f'services_updated_per_{key}']}"
        )
    print(f"ratio no-op diff / stack deploy (medians): {result['ratio_median']:.2f}x")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
