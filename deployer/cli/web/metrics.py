"""`GET /metrics`: what the agent saw last, in Prometheus' text format. Every name starts with
`deployer_`; labels are environment, host and service names, never a value."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from deployer.commands.serve import SKIPPED, Agent
from deployer.core.results import SUCCESS, Statuses
from deployer.core.watch import HEALTHY, IN_SYNC, INVALID, UNKNOWN


class _Collector:
    """Builds the metrics from the agent's views at each scrape."""

    def __init__(self, agent: Agent, notifications_failed: Callable[[], int]) -> None:
        self.agent, self.notifications_failed = agent, notifications_failed

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def gauge(name: str, text: str, labels: tuple[str, ...] = ("environment",)) -> Any:
            return GaugeMetricFamily(f"deployer_{name}", text, labels=list(labels))

        in_sync = gauge("in_sync", "1: what runs is what is declared; 0: it differs, or is unknown")
        readable = gauge("readable", "1: read in the last round; 0: not reached, or spec invalid")
        healthy = gauge("healthy", "1: every service running and healthy; 0: not, or unknown")
        pending = gauge("pending_changes", "Changes `deploy ENV` would make")
        round_time = gauge("last_reconcile_timestamp_seconds", "When the last round began")
        round_seconds = gauge("last_reconcile_duration_seconds", "How long the last round took")
        deploy_time = gauge("last_deploy_timestamp_seconds", "When the agent last deployed")
        deploy_ok = gauge("last_deploy_success", "1: the agent's last deploy succeeded")
        host_sync = gauge("host_in_sync", "Per host: 1 in sync", ("environment", "host"))
        host_health = gauge("host_healthy", "Per host: 1 healthy", ("environment", "host"))
        service_health = gauge(
            "service_healthy",
            "Per service: 1 all its containers running and healthy",
            ("environment", "host", "service"),
        )
        rounds = CounterMetricFamily(
            "deployer_rounds", "Reconcile rounds of the environment", labels=["environment"]
        )
        errors = CounterMetricFamily(
            "deployer_errors",
            "Rounds that could not read the environment, or whose deploy failed",
            labels=["environment"],
        )
        for view in self.agent.views():
            name, now = view.name, view.reading
            in_sync.add_metric([name], float(now.sync == IN_SYNC))
            readable.add_metric([name], float(now.sync not in (UNKNOWN, INVALID)))
            healthy.add_metric([name], float(now.health == HEALTHY))
            pending.add_metric([name], float(len(now.changes)))
            round_time.add_metric([name], view.started)
            round_seconds.add_metric([name], view.seconds)
            if view.deployed is not None and view.deployed.result != SKIPPED:
                deploy_time.add_metric([name], view.deployed.time)
                deploy_ok.add_metric([name], float(view.deployed.result == SUCCESS))
            for host in now.hosts:
                host_sync.add_metric([name, host.host], float(host.sync == IN_SYNC))
                host_health.add_metric([name, host.host], float(host.health == HEALTHY))
            if isinstance(view.status, Statuses):
                for outcome in view.status.outcomes:
                    for service in outcome.value.services if outcome.value else ():
                        labels = [name, outcome.host, service.service]
                        service_health.add_metric(labels, float(service.healthy))
            rounds.add_metric([name], float(view.rounds))
            errors.add_metric([name], float(view.errors))
        yield from (in_sync, readable, healthy, pending, round_time, round_seconds)
        yield from (deploy_time, deploy_ok, host_sync, host_health, service_health, rounds, errors)
        notifications = CounterMetricFamily(
            "deployer_notifications_failed", "Notifications given up on after every retry"
        )
        notifications.add_metric([], float(self.notifications_failed()))
        yield notifications


def metrics_registry(agent: Agent, notifications_failed: Callable[[], int]) -> Any:
    """The registry `GET /metrics` exposes: the agent's metrics and its process' (CPU, memory)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(agent, notifications_failed))
    ProcessCollector(namespace="deployer", registry=registry)
    return registry
