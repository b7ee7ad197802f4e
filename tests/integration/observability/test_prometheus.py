"""Prometheus on the real stack: it scrapes every service and the stack exporter, its rules pass their own unit
tests, a component that dies fires an alert `tradesim alerts` shows (and that clears when it is back), and
`tradesim top` draws the stack from it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tradesim.adapters.kafka.client import producer
from tradesim.adapters.prometheus.client import PrometheusApi
from tradesim.cli.app import app
from tradesim.domain.events import encode
from tradesim.settings import Settings
from tradesim.stack import watchdog
from tradesim.stack.jobs import source_groups, submit_standard_jobs
from tradesim.stack.prometheus import RULES_DIR, Prometheus
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import outcomes, unique_symbol
from tradesim.testing.foreign import foreign_server
from tradesim.testing.waiting import wait_for

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def prom(settings: Settings) -> Iterator[PrometheusApi]:
    api = PrometheusApi(settings.observability.client_url)
    yield api
    api.close()


@pytest.fixture(scope="module")
def standard_jobs(settings: Settings) -> None:
    """The jobs whose consumer groups and rows the exporter and `top` show (running already in a full session)."""
    submit_standard_jobs(settings)


def test_the_alert_rules_pass_their_unit_tests() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "the prometheus component installs promtool with Prometheus"
    done = subprocess.run([promtool, "test", "rules", "tradesim.test.yml"], cwd=RULES_DIR, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_service_and_the_exporter_are_scraped(settings: Settings, prom: PrometheusApi) -> None:
    wanted = set(Prometheus(settings).scrape_targets()) - {"market"}  # the market runs on demand

    def all_up() -> bool:
        health = {t["labels"]["job"]: t["health"] for t in prom.targets()}
        return all(health.get(job) == "up" for job in wanted)

    wait_for(all_up, 60, f"{sorted(wanted)} scraped", poll_s=0.2)


def test_the_exporter_reports_each_component_and_every_consumer_group(settings: Settings, prom: PrometheusApi,
                                                                      standard_jobs: None) -> None:
    servers = {"kafka", "redis", "dynamodb", "opensearch", "clickhouse", "flink", "marketdata", "api"}

    def measured() -> bool:
        rss = {s.labels["component"]: s.value for s in prom.query("tradesim_component_rss_bytes")}
        return all(rss.get(name, 0) > 10 * 2**20 for name in servers)  # each tree holds at least 10 MB

    wait_for(measured, 60, "CPU and RSS of every server", poll_s=0.2)
    up = {s.labels["component"]: s.value for s in prom.query("tradesim_component_up")}
    assert all(up[name] == 1 for name in servers), up
    prefix = settings.persistence.group_prefix
    wanted = set(source_groups(settings)) | {(f"{prefix}-search", settings.topics.trade_executed)}

    def missing() -> set[tuple[str, str]]:  # a group is reported once it has committed a position
        return wanted - {(s.labels["group"], s.labels["topic"]) for s in prom.query("tradesim_consumer_lag")}

    wait_for(lambda: not missing(), 60, "the lag of every consumer group", poll_s=0.2)
    redis = prom.scalar("tradesim_redis_maxmemory_bytes")
    assert redis == settings.redis.maxmemory_mb * 2**20


def test_order_to_outcome_latency_is_recorded_from_the_outcomes(settings: Settings, prom: PrometheusApi) -> None:
    before = prom.scalar("sum(tradesim_order_outcome_seconds_count)") or 0
    (event,) = outcomes(["obs-" + os.urandom(4).hex()], [unique_symbol("O")], 1, seed=3,
                        start_ms=int(time.time() * 1000))
    market = event.model_copy(update={"order_type": "market"})
    p = producer(settings.kafka)
    p.produce(settings.topics.trade_executed, key=market.key, value=encode(market))
    assert p.flush(10) == 0
    wait_for(lambda: (prom.scalar("sum(tradesim_order_outcome_seconds_count)") or 0) > before, 60,
             "the outcome counted in the latency histogram", poll_s=0.2)


def test_a_component_that_dies_fires_an_alert_until_it_is_back(
        settings: Settings, supervisor: Supervisor, prom: PrometheusApi) -> None:
    def firing() -> set[str]:
        return {a.labels.get("component", "") for a in prom.alerts()
                if a.name == "TradesimComponentDown" and a.state == "firing"}

    watchdog.stop(settings)  # a restarting one (a stack the session found) would bring the victim back too soon
    (status,) = [s for s in supervisor.status() if s.name == "marketdata"]
    assert status.pid is not None
    assert "marketdata" not in firing()
    os.kill(status.pid, signal.SIGKILL)
    try:
        wait_for(lambda: "marketdata" in firing(), 90, "TradesimComponentDown for marketdata", poll_s=0.2)
        shown = runner.invoke(app, ["alerts"], env={"COLUMNS": "200"})
        assert shown.exit_code == 1, shown.output  # something fires: scripts can tell
        assert "TradesimComponentDown" in shown.output
        assert "component=marketdata" in shown.output
    finally:
        supervisor.up()
    wait_for(lambda: "marketdata" not in firing(), 90, "the alert resolved once marketdata is back", poll_s=0.2)


def test_top_draws_the_stack_once(settings: Settings, prom: PrometheusApi, standard_jobs: None) -> None:
    wait_for(lambda: prom.query("tradesim:component_cpu:rate"), 60, "a CPU rate (two exporter passes)", poll_s=0.2)
    shown = runner.invoke(app, ["top", "--once"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    for part in ("orders/s", "components", "kafka", "consumer lag", "tradesim-execution", "jobs"):
        assert part in shown.output


def test_alerts_without_prometheus_is_one_line_and_exit_1(settings: Settings) -> None:
    # a server that does not answer is the stack's problem (exit 1, as `chaos`, `trace` and `jobs` say it), not a
    # mistake in the command (before: exit 2)
    shown = runner.invoke(app, ["alerts"], env={"TRADESIM_OBSERVABILITY__PROMETHEUS_URL": "http://127.0.0.1:9"})
    assert shown.exit_code == 1
    assert shown.output.strip().startswith("error: no Prometheus answers at http://127.0.0.1:9")
    assert len(shown.output.strip().splitlines()) == 1
    with foreign_server(500, b"<html>\n<body>\nnot\nPrometheus</body></html>") as url:
        shown = runner.invoke(app, ["alerts"], env={"TRADESIM_OBSERVABILITY__PROMETHEUS_URL": url})
    assert shown.exit_code == 1
    assert len(shown.output.strip().splitlines()) == 1  # before: the server's page over four lines
    assert "answered HTTP 500" in shown.output
