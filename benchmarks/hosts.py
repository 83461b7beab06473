"""Benchmark: an environment of several hosts against the same environment on one host.

On the multi-host test bed (scripts/test-hosts: engines dh1..dhN in their own network
namespaces, reached over unix:// sockets or ssh://), for 1, 3 and 5 hosts, it measures (medians
of --runs):
  - a no-op `deploy diff ENV` (every host in sync): the hosts are read in parallel, so the aim
    is a wall time at 5 hosts within 1.5x of one host;
  - a one-service change, `deploy ENV --yes` after changing web's tag (alternately 1.0.0 and
    1.1.0), and on how many hosts web's container was replaced. Meaningful once `deploy ENV` rolls out
    over every host (deploy.batch); before that, it changes the first host only, which the
    "hosts changed" column shows.
The environment has two services (web with a health check, worker) from the test app image.

Needs scripts/test-engine and the package installed; leases the bed (up to the largest count,
released at the end, `down` only when no other session uses it):
    .venv/bin/python benchmarks/hosts.py [--hosts 1 3 5] [--transports unix ssh] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BED = ROOT / "scripts" / "test-hosts"
HOSTS_STATE = Path(os.environ.get("DEPLOYER_TEST_STATE", "/var/lib/deployer-test")) / "hosts"
REGISTRY = "127.0.0.1:5000/deployer-bench"  # as pushed; the hosts pull it through the bridge
NODE_REGISTRY = "10.213.0.1:5000/deployer-bench"
DEPLOY = [sys.executable, "-m", "deployer"]
TAGS = ("1.0.0", "1.1.0")


def sh(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if check and proc.returncode not in (0, 2):
        raise SystemExit(
            f"{' '.join(argv[:5])} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return proc.stdout


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    sh(argv, env)
    return time.perf_counter() - started


def url(k: int, transport: str) -> str:
    return f"unix:///run/dh{k}/docker.sock" if transport == "unix" else f"ssh://root@10.213.0.1{k}"


def bed_env() -> dict[str, str]:
    """What reaches the bed's hosts over ssh:// (tests/integration/bed.py: Bed.env)."""
    home = HOSTS_STATE / "home"
    return {
        "HOME": str(home),
        "PATH": f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "DOCKER_CONFIG": os.environ.get("DOCKER_CONFIG", str(Path.home() / ".docker")),
    }


def write_environment(folder: Path, project: str, urls: list[str], tag: str) -> None:
    (folder / "compose.yml").write_text(
        "services:\n"
        f"  web:\n    image: {NODE_REGISTRY}/testapp:${{WEB_TAG}}\n    stop_grace_period: 1s\n"
        f"  worker:\n    image: {NODE_REGISTRY}/testapp:1.0.0\n"
        '    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]\n    stop_grace_period: 1s\n'
    )
    (folder / ".env").write_text(f"WEB_TAG={tag}\n")
    (folder / "bench.yml").write_text(
        f"project: {project}\ncompose_files: [compose.yml]\nenv_files: [.env]\n"
        f"engine: {{hosts: {json.dumps(urls)}}}\ndeploy: {{wait_timeout: 120}}\n"
    )


def web_containers(project: str, count: int) -> list[str]:
    """The ID of web's container on each of hosts 1..count."""
    labels = [f"label=com.docker.compose.project={project}", "label=com.docker.compose.service=web"]
    filters = [arg for label in labels for arg in ("--filter", label)]
    return [
        sh(["docker", "-H", url(k, "unix"), "ps", "-q", *filters]).strip()
        for k in range(1, count + 1)
    ]


def remove(project: str, count: int) -> None:
    for k in range(1, count + 1):
        host = ["docker", "-H", url(k, "unix")]
        sh([*host, "compose", "-p", project, "down", "--timeout", "1"], check=False)
        records = sh(
            [*host, "volume", "ls", "-q", "--filter", f"label=dev.deployer.project={project}"],
            check=False,
        ).split()
        if records:
            sh([*host, "volume", "rm", *records], check=False)


def bench(count: int, transport: str, runs: int) -> dict[str, Any]:
    project = f"bench-hosts-{uuid.uuid4().hex[:8]}"
    urls = [url(k, transport) for k in range(1, count + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_environment(folder, project, urls, TAGS[0])
        env = {**bed_env(), "DEPLOYER_ENVIRONMENTS": str(folder)}
        try:
            for host in urls:  # one host at a time: works with and without the rollout
                sh([*DEPLOY, "bench", "--yes", "--hosts", host], env)
            in_sync = sh([*DEPLOY, "diff", "bench", "--json"], env)
            assert json.loads(in_sync)["in_sync"], in_sync
            diff = [timed([*DEPLOY, "diff", "bench"], env) for _ in range(runs)]
            change, changed = [], []
            for run in range(runs):
                tag = TAGS[(run + 1) % 2]
                (folder / ".env").write_text(f"WEB_TAG={tag}\n")
                before = web_containers(project, count)
                change.append(timed([*DEPLOY, "bench", "--yes"], env))
                after = web_containers(project, count)
                changed.append(sum(1 for b, a in zip(before, after, strict=True) if b != a))
        finally:
            remove(project, count)
    return {
        "hosts": count,
        "transport": transport,
        "noop_diff_s": round(statistics.median(diff), 3),
        "one_change_deploy_s": round(statistics.median(change), 3),
        "hosts_changed": sorted(set(changed)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--transports", nargs="+", default=["unix", "ssh"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "hosts.json"
    )
    args = parser.parse_args()
    subprocess.run(
        [str(ROOT / "scripts" / "build-images"), REGISTRY, *(f"testapp:{t}" for t in TAGS)],
        check=True,
        capture_output=True,
    )
    lease = str(os.getpid())  # a living process: the bed stays up while it runs
    sh([str(BED), "lease", lease, str(max(args.hosts))])
    try:
        results = []
        for transport in args.transports:
            for count in args.hosts:
                results.append(bench(count, transport, args.runs))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        sh([str(BED), "release", lease], check=False)
    print(f"{'transport':<10}{'hosts':>6}{'no-op diff':>12}{'vs 1 host':>10}"
          f"{'one change':>12}{'hosts changed':>15}")  # fmt: skip
    for result in results:
        one = next(
            r for r in results if r["transport"] == result["transport"] and r["hosts"] == 1
        ) if 1 in args.hosts else result  # fmt: skip
        print(
            f"{result['transport']:<10}{result['hosts']:>6}{result['noop_diff_s']:>11.3f}s"
            f"{result['noop_diff_s'] / one['noop_diff_s']:>9.2f}x"
            f"{result['one_change_deploy_s']:>11.3f}s{result['hosts_changed']!s:>15}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
