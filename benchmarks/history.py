"""Benchmark: `deploy history` and `deploy audit` with many records on the engine.

Records are Docker volumes whose labels hold them (docs/state.md). This creates them directly
through the Docker SDK for a throwaway project (releases shaped like real ones: two services,
a few changes), then measures the median of --runs of `deploy history ENV` and
`deploy audit ENV` (whole commands, Python start-up included), and of reading the records alone
in this process (`releases.history`, `audit.entries`: the engine call and the parsing), for each
count of records; everything it created is removed afterwards.
By default: 10 releases (the default keep_history) and 300 (an environment with no retention
after a year of deploys); 1000 audit entries (the most retention keeps).

Needs a Docker engine (scripts/test-engine) and the package installed:
    .venv/bin/python benchmarks/history.py [--releases 10 300] [--audit 1000] [--runs 5]
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

import docker

from deployer.infra.engine import Engine, EngineClient
from deployer.state import audit, releases
from deployer.state.engine_store import StateStore

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = [sys.executable, "-m", "deployer"]
IMAGE = "ghcr.io/acme/web"


def release_record(number: int) -> dict[str, Any]:
    image_id = f"sha256:{number:064x}"
    return {
        "number": number,
        "time": "2026-11-28T12:00:00Z",
        "performer": "bench",
        "host": "bench-host",
        "command": "deploy bench",
        "spec_hash": "0123456789abcdef",
        "variables_hash": "fedcba9876543210",
        "result": "success",
        "services": {
            name: {
                "image": f"{IMAGE}-{name}:1.{number}.0",
                "image_id": image_id,
                "pinned": f"{IMAGE}-{name}@sha256:{number:064x}",
            }
            for name in ("web", "worker")
        },
        "changes": [
            f"web recreate: image {IMAGE}-web:1.{number - 1}.0 -> 1.{number}.0",
            "worker recreate: environment LOG_LEVEL changed",
        ],
    }


def audit_record(index: int) -> dict[str, Any]:
    return {
        "time": "2026-11-28T12:00:00Z",
        "performer": "bench",
        "host": "bench-host",
        "environment": "bench",
        "command": "deploy bench",
        "result": "success",
        "changes": ["web recreate: environment LOG_LEVEL changed"],
        "error": "",
        "at": 1_790_000_000.0 + index,
    }


def add(client: docker.DockerClient, project: str, kind: str, key: str, record: Any) -> None:
    client.volumes.create(
        name=f"deployer_{project}_{kind}_{key}",
        labels={
            "dev.deployer.state": kind,
            "dev.deployer.project": project,
            "dev.deployer.record": json.dumps(record, sort_keys=True, separators=(",", ":")),
        },
    )


def median_seconds(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv[3:])} failed: {proc.stderr.strip()[-500:]}")
    return statistics.median(times)


def median_in_process(read: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--releases", type=int, nargs="+", default=[10, 300])
    parser.add_argument("--audit", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "history.json"
    )
    args = parser.parse_args()
    client = docker.from_env()
    project = f"bench-history-{uuid.uuid4().hex[:8]}"
    store = StateStore(EngineClient(Engine.choose(None, os.environ)), project)
    results: dict[str, Any] = {"runs": args.runs, "history": [], "audit": {}}
    try:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "compose.yml").write_text(f"services:\n  web:\n    image: {IMAGE}:1\n")
            (Path(folder) / "bench.yml").write_text(
                f"project: {project}\ncompose_files: [compose.yml]\n"
            )
            env = {**os.environ, "DEPLOYER_ENVIRONMENTS": folder}
            made = 0
            for count in sorted(args.releases):
                for number in range(made + 1, count + 1):
                    add(client, project, "release", f"{number:06d}", release_record(number))
                made = count
                seconds = median_seconds([*DEPLOY, "history", "bench"], env, args.runs)
                json_seconds = median_seconds(
                    [*DEPLOY, "history", "bench", "--json"], env, args.runs
                )
                reading = median_in_process(lambda: releases.history(store), args.runs)
                results["history"].append(
                    {
                        "releases": count,
                        "text_s": round(seconds, 3),
                        "json_s": round(json_seconds, 3),
                        "read_s": round(reading, 4),
                    }
                )
                print(
                    f"deploy history, {count} releases: {seconds:.3f} s (--json"
                    f" {json_seconds:.3f} s; reading the records {reading * 1000:.1f} ms)"
                )
            for index in range(args.audit):
                add(client, project, "audit", f"{index:06d}", audit_record(index))
            seconds = median_seconds([*DEPLOY, "audit", "bench"], env, args.runs)
            reading = median_in_process(lambda: audit.entries(store), args.runs)
            results["audit"] = {
                "entries": args.audit,
                "text_s": round(seconds, 3),
                "read_s": round(reading, 4),
            }
            print(
                f"deploy audit, {args.audit} entries: {seconds:.3f} s"
                f" (reading the records {reading * 1000:.1f} ms)"
            )
            baseline = median_seconds([*DEPLOY, "version"], env, args.runs)
            results["version_s"] = round(baseline, 3)
            print(f"deploy version (start-up alone): {baseline:.3f} s")
    finally:
        for volume in client.volumes.list(filters={"label": f"dev.deployer.project={project}"}):
            volume.remove(force=True)
        client.close()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
