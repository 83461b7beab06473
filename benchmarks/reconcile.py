"""Benchmark: deployer against plain `docker compose` on the same project, side by side.

For a 30- and a 200-service environment on the local engine, it measures (medians of --runs):
  - a no-op `deploy ENV --yes` against `docker compose up -d` with nothing to change;
  - `deploy diff ENV` against `docker compose up -d --dry-run`
    (for both, deployer and Compose take turns within each run; the ratios run by run are shown);
  - a deploy that changes one service against `docker compose up -d` doing the same,
    and counts the containers recreated (the aim: exactly one).
Compose gets exactly deployer's invocation (from `deploy render --json`), so both do the same work.
deployer's modules are compiled to bytecode first, as installing a package leaves them: with
PYTHONDONTWRITEBYTECODE set (as in this project's sessions), an editable install would otherwise
compile every module on every run.

Needs scripts/test-engine (engine, Compose v2, registry on 127.0.0.1:5000) and the package installed:
    .venv/bin/python benchmarks/reconcile.py [--sizes 30 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import deployer

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "127.0.0.1:5000/deployer-bench"
IMAGE = f"{REGISTRY}/testapp:1.0.0"
DEPLOY = [sys.executable, "-m", "deployer"]


def sh(
    argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None, check: bool = True
) -> str:
    proc = subprocess.run(
        argv, env={**os.environ, **(env or {})}, input=stdin, capture_output=True, text=True
    )
    if check and proc.returncode not in (0, 2):
        raise SystemExit(
            f"{' '.join(argv[:4])} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return proc.stdout


def timed(argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> float:
    started = time.perf_counter()
    sh(argv, env, stdin)
    return time.perf_counter() - started


def write_environment(folder: Path, project: str, size: int) -> None:
    services = "".join(
        f"  s{i:03d}:\n    image: {IMAGE}\n    command: [sleep, '86400']\n"
        f"    environment: {{VALUE: '${{VALUE_{i:03d}}}'}}\n"
        "    healthcheck: {disable: true}\n    stop_grace_period: 1s\n"
        for i in range(size)
    )
    (folder / "compose.yml").write_text(f"services:\n{services}")
    (folder / ".env").write_text("".join(f"VALUE_{i:03d}=v0\n" for i in range(size)))
    (folder / "bench.yml").write_text(
        f"project: {project}\ncompose_files: [compose.yml]\nenv_files: [.env]\ndeploy: {{wait_timeout: 600}}\n"
    )


def compose_invocation(env: dict[str, str]) -> tuple[list[str], dict[str, str], str]:
    """Exactly what deployer would run for a full `up`, as plain `docker compose`."""
    rendered = json.loads(sh([*DEPLOY, "render", "bench", "--json"], env))
    # The env file deployer hands Compose in memory, as a file here (no secrets in it).
    files = {}
    for descriptor, content in rendered["files"].items():
        files[descriptor] = (
            Path(env["DEPLOYER_ENVIRONMENTS"]) / f"fd{descriptor.rpartition('/')[2]}.env"
        )
        files[descriptor].write_text(content)
    argv = [str(files.get(a, a)) for a in rendered["argv"] if a != "--remove-orphans"]
    variables = {k: v for k, v in rendered["env"].items() if v != "***"}
    return argv, variables, rendered["stdin"]


def container_ids(project: str) -> dict[str, str]:
    out = sh(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            "{{.Names}} {{.ID}}",
        ]
    )
    return dict(line.split() for line in out.splitlines())


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def ratios(ours: list[float], theirs: list[float]) -> list[float]:
    """Deployer's time over Compose's, run by run, sorted: the spread of the ratio."""
    return sorted(round(a / b, 2) for a, b in zip(ours, theirs, strict=True))


def bench(size: int, runs: int) -> dict[str, Any]:
    project = f"bench-{size}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_environment(folder, project, size)
        env = {"DEPLOYER_ENVIRONMENTS": str(folder)}
        try:
            first = timed([*DEPLOY, "bench", "--yes"], env)
            argv, variables, stdin = compose_invocation(env)
            # Deployer and Compose take turns within each run, so that a change in the machine's
            # load meanwhile weighs on both alike.
            up_at = argv.index("up")
            dry_run = [*argv[:up_at], "up", "--dry-run", *argv[up_at + 1 :]]
            noop_deploy, noop_compose, diff_deploy, diff_compose = [], [], [], []
            for _ in range(runs):
                noop_deploy.append(timed([*DEPLOY, "bench", "--yes"], env))
                noop_compose.append(timed(argv, variables, stdin))
                diff_deploy.append(timed([*DEPLOY, "diff", "bench"], env))
                diff_compose.append(timed(dry_run, variables, stdin))

            one_deploy, one_compose, recreated = [], [], []
            env_file = folder / ".env"
            for run in range(runs):
                env_file.write_text(
                    env_file.read_text().replace(
                        f"VALUE_000=v{2 * run}\n", f"VALUE_000=v{2 * run + 1}\n"
                    )
                )
                before = container_ids(project)
                one_deploy.append(timed([*DEPLOY, "bench", "--yes"], env))
                after = container_ids(project)
                recreated.append(sum(1 for name, cid in after.items() if before.get(name) != cid))
                env_file.write_text(
                    env_file.read_text().replace(
                        f"VALUE_000=v{2 * run + 1}\n", f"VALUE_000=v{2 * run + 2}\n"
                    )
                )
                argv, variables, stdin = compose_invocation(env)
                one_compose.append(timed(argv, variables, stdin))
            in_sync_after = (
                sh([*DEPLOY, "diff", "bench"], env).strip().endswith("in sync, nothing to change")
            )
        finally:
            sh(["docker", "compose", "-p", project, "down", "--timeout", "1"], check=False)
            records = sh(
                [
                    "docker",
                    "volume",
                    "ls",
                    "-q",
                    "--filter",
                    f"label=dev.deployer.project={project}",
                ],
                check=False,
            )
            if records.split():
                sh(["docker", "volume", "rm", *records.split()], check=False)
    return {
        "services": size,
        "first_deploy_s": round(first, 2),
        "noop": {"deploy": median(noop_deploy), "compose_up": median(noop_compose)},
        "diff": {"deploy_diff": median(diff_deploy), "compose_dry_run": median(diff_compose)},
        "run_ratios": {
            "noop": ratios(noop_deploy, noop_compose),
            "diff": ratios(diff_deploy, diff_compose),
        },
        "one_change": {"deploy": median(one_deploy), "compose_up": median(one_compose)},
        "recreated_per_one_change": sorted(set(recreated)),
        "in_sync_after": in_sync_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 200])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "reconcile.json"
    )
    args = parser.parse_args()
    compileall.compile_dir(Path(deployer.__file__).parent, quiet=1)
    subprocess.run(
        [str(ROOT / "scripts" / "build-images"), REGISTRY, "testapp:1.0.0"],
        check=True,
        capture_output=True,
    )
    results = [bench(size, args.runs) for size in args.sizes]
    print(f"{'services':>8}  {'measure':<28}{'deployer':>10}{'compose':>10}{'ratio':>8}")
    for result in results:
        for name, (ours, theirs) in {
            "no-op deploy vs up -d": result["noop"].values(),
            "diff vs up -d --dry-run": result["diff"].values(),
            "one change vs up -d": result["one_change"].values(),
        }.items():
            print(
                f"{result['services']:>8}  {name:<28}{ours:>9.3f}s{theirs:>9.3f}s{ours / theirs:>7.2f}x"
            )
        for name, spread in result["run_ratios"].items():
            print(
                f"{result['services']:>8}  {name} ratio run by run: {spread[0]:.2f}x to {spread[-1]:.2f}x"
            )
        print(
            f"{result['services']:>8}  containers recreated per one-service change: {result['recreated_per_one_change']}"
            f"; in sync afterwards: {result['in_sync_after']}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
