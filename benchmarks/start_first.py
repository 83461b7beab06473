"""Benchmark: requests through a reverse proxy during an image update, start-first against
stop-first (docs/performance.md, "Start-first updates").

The environment of tests/integration/test_start_first.py: Caddy (Debian's, in a scratch image:
scripts/build-proxy-image) in front of web, 2 replicas of the test app, which takes 2 s to start
and ends the requests under way on SIGTERM; Caddy retries a failed connection for 1 s. Each round
deploys a new tag of web start-first, then another stop-first (the spec's `services.web.order`),
with a client loop through the proxy (one request after the other, 10 ms apart) during each
deploy, and counts the requests, the failed ones and the deploy's time. Everything it made is
removed at the end.

Needs scripts/test-engine (engine, Compose v2, registry on 127.0.0.1:5000):
    .venv/bin/python benchmarks/start_first.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from tests.integration.conftest import remove_project, untag  # noqa: E402
from tests.integration.traffic import ROLLING_COMPOSE, Traffic, caddyfile  # noqa: E402

REGISTRY = "127.0.0.1:5000/deployer-bench"
PROJECT = "bench-start-first"
DEPLOY = [sys.executable, "-m", "deployer"]
TAGS = ("1.0.0", "1.1.0")


def sh(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def write(folder: Path, proxy: str, tag: str, order: str) -> None:
    (folder / "app").mkdir(exist_ok=True)
    (folder / "app/compose.yml").write_text(ROLLING_COMPOSE)
    (folder / "app/Caddyfile").write_text(caddyfile())
    (folder / "app/.env").write_text(
        f"REGISTRY={REGISTRY}\nWEB_TAG={tag}\nPROXY_IMAGE={proxy}\nPROXY_PUBLISH=127.0.0.1::80\n"
    )
    (folder / "bench.yml").write_text(
        f"project: {PROJECT}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"deploy: {{wait_timeout: 60}}\nservices: {{web: {{order: {order}}}}}\n"
    )


def proxy_url() -> str:
    port = sh(["docker", "port", f"{PROJECT}-proxy-1", "80"]).split(":")[-1].strip()
    return f"http://127.0.0.1:{port}/version"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sh([str(ROOT / "scripts/build-images"), REGISTRY, *(f"testapp:{t}" for t in TAGS)])
    proxy = sh([str(ROOT / "scripts/build-proxy-image"), REGISTRY]).strip()
    with tempfile.TemporaryDirectory() as folder:
        env = {"DEPLOYER_ENVIRONMENTS": folder}
        try:
            write(Path(folder), proxy, TAGS[0], "start-first")
            sh([*DEPLOY, "bench", "--yes"], env)
            url, deploys = proxy_url(), 0
            print("order        requests  failed  deploy")
            for _ in range(args.rounds):
                for order in ("start-first", "stop-first"):
                    deploys += 1
                    write(Path(folder), proxy, TAGS[deploys % 2], order)
                    with Traffic(url) as traffic:
                        started = time.monotonic()
                        sh([*DEPLOY, "bench", "--yes"], env)
                        seconds = time.monotonic() - started
                    failed = len(traffic.failures)
                    print(f"{order:<11}  {traffic.requests:>8}  {failed:>6}  {seconds:5.1f}s")
        finally:
            engine = docker.from_env()
            remove_project(engine, PROJECT)  # containers, networks and the deploys' records
            for image in (proxy, *(f"{REGISTRY}/testapp:{t}" for t in TAGS)):
                untag(engine, image)
            engine.close()


if __name__ == "__main__":
    main()
