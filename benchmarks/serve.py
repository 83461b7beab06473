"""Benchmark: what `deploy serve` costs (docs/performance.md, "The agent").

Deploys --environments environments of --services services each on the local engine (one image,
every service a container), then starts the agent over them and measures:
  - one round over all of them (SIGHUP starts one; timed until every environment's round
    counter moved), and each environment's share (deployer_last_reconcile_duration_seconds);
  - the agent idle at the default interval (60 s): CPU time used over --idle seconds (so one
    round or two among them), and its memory (resident set) at the end.
Everything it made is removed at the end (unless --keep: a run after that deploys nothing).

Needs scripts/test-engine (engine, Compose v2, registry on 127.0.0.1:5000):
    .venv/bin/python benchmarks/serve.py [--environments 20] [--services 10] [--idle 180] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "127.0.0.1:5000/deployer-bench"
DEPLOY = [sys.executable, "-m", "deployer"]
PORT = 18797


def sh(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def write(folder: Path, environments: int, services: int) -> list[str]:
    # The test image checks its health every second: 200 of them would load this 2-core machine
    # with 200 checks a second, which measures the engine, not the agent.
    compose = "services:\n" + "".join(
        f"  s{n:02d}:\n    image: {REGISTRY}/testapp:1.0.0\n    healthcheck: {{disable: true}}\n"
        for n in range(services)
    )
    (folder / "compose.yml").write_text(compose)
    names = [f"bench{e:02d}" for e in range(environments)]
    for name in names:
        (folder / f"{name}.yml").write_text(
            f"project: serve-{name}\ncompose_files: [compose.yml]\n"
            "deploy: {wait_timeout: 120}\nwatch: {apply: notify}\n"
        )
    return names


def metrics() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=10) as response:
        return str(response.read().decode())


def values(name: str) -> dict[str, float]:
    pattern = rf'^{name}{{environment="([^"]+)"}} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, metrics(), re.MULTILINE)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--environments", type=int, default=20)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--idle", type=float, default=180.0)
    parser.add_argument(
        "--keep", action="store_true", help="leave the environments deployed (a rerun is quick)"
    )
    arguments = parser.parse_args()
    sh([str(ROOT / "scripts" / "build-images"), REGISTRY, "testapp:1.0.0"])
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        names = write(folder, arguments.environments, arguments.services)
        env = {"DEPLOYER_ENVIRONMENTS": str(folder)}
        started = time.perf_counter()
        for name in names:
            sh([*DEPLOY, name, "--yes"], env)
        print(
            f"deployed {len(names)} environments of {arguments.services} services "
            f"in {time.perf_counter() - started:.0f} s"
        )
        agent = subprocess.Popen(
            [*DEPLOY, "serve", "--listen", f"127.0.0.1:{PORT}"],
            env={**os.environ, **env},
            stderr=subprocess.DEVNULL,
        )
        try:
            measure(agent, names, arguments.idle)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(120)
            for name in [] if arguments.keep else names:
                sh([*DEPLOY, "down", name, "--yes"], env)


def measure(agent: subprocess.Popen[bytes], names: list[str], idle: float) -> None:
    def rounds() -> dict[str, float]:
        try:
            return values("deployer_rounds_total")
        except OSError:
            return {}

    while len(rounds()) < len(names):  # the first round, at start
        time.sleep(0.2)
    seconds = []
    for _ in range(3):
        before = rounds()
        started = time.perf_counter()
        agent.send_signal(signal.SIGHUP)
        while any(rounds().get(n, 0) <= before[n] for n in names):
            time.sleep(0.05)
        seconds.append(time.perf_counter() - started)
    shares = values("deployer_last_reconcile_duration_seconds")
    print(
        f"one round over {len(names)} environments: {statistics.median(seconds):.2f} s "
        f"(median of 3: {', '.join(f'{s:.2f}' for s in seconds)}); per environment "
        f"{statistics.median(shares.values()):.3f} s median, {max(shares.values()):.3f} s max"
    )
    cpu, started = cpu_seconds(agent.pid), time.perf_counter()
    time.sleep(idle)
    used, elapsed = cpu_seconds(agent.pid) - cpu, time.perf_counter() - started
    print(
        f"idle at the default interval (60 s), over {elapsed:.0f} s: {used:.2f} s of CPU "
        f"({100 * used / elapsed:.2f} % of one core); resident memory {resident_mib(agent.pid):.0f} MiB"
    )


if __name__ == "__main__":
    main()
