"""`tradesim top` (a live dashboard) and `tradesim alerts`, both read from Prometheus."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tradesim.adapters.prometheus.client import PrometheusApi, Sample
from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import console
from tradesim.ports import Unavailable
from tradesim.settings import load_settings
from tradesim.stack.errors import StackError

out = console()


def register(app: typer.Typer) -> None:
    app.command("top")(top_cmd)
    app.command("alerts")(alerts_cmd)


def _api() -> PrometheusApi:
    return PrometheusApi(load_settings().observability.client_url)


def _unreachable(exc: Unavailable) -> StackError:
    return StackError(f"{exc}; start it with `tradesim up` (or set observability.prometheus_url)")


def alerts_cmd(
    all_: Annotated[bool, typer.Option("--all", help="Pending alerts too, not only firing ones.")] = False,
) -> None:
    """Alerts Prometheus fires now (rules in tradesim/stack/rules/); exit 1 when any fires, for scripts."""
    _alerts(all_)


@cli_errors
def _alerts(all_: bool) -> None:
    api = _api()
    try:
        alerts = [a for a in api.alerts() if all_ or a.state == "firing"]
    except Unavailable as exc:
        raise _unreachable(exc) from None
    finally:
        api.close()
    if not alerts:
        out.print("no alerts firing" if not all_ else "no alerts firing or pending")
        return
    table = Table("alert", "state", "severity", "labels", "summary", "since")
    for a in alerts:
        labels = _labels(a.labels)
        table.add_row(a.name, a.state, a.severity, labels, a.summary, a.active_at[:19].replace("T", " "))
    out.print(table)
    if any(a.state == "firing" for a in alerts):
        raise typer.Exit(1)


def top_cmd(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.5, max=3600)] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one screen and exit (for scripts and CI).")] = False,
) -> None:
    """A live dashboard of the stack from Prometheus: orders/s, order → outcome p50/p99, consumer lags, errors,
    restarts, CPU and memory per component. Ctrl-C ends it."""
    _top(interval, once)


def _labels(labels: dict[str, str]) -> str:
    """An alert's own labels; where it was scraped from is noise here."""
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("instance", "job"))


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _by(samples: list[Sample], label: str) -> dict[str, float]:
    """Each series' value under its `label`. A series without that label (a foreign exporter's, a recording rule
    that summed it away) is no component or job of ours: it is left out."""
    return {s.labels[label]: s.value for s in samples if label in s.labels}


def screen(api: PrometheusApi) -> Group:
    """One refresh of the dashboard; raises Unavailable."""
    orders = api.scalar("tradesim:orders_accepted:rate")
    p50, p99 = api.scalar("tradesim:order_outcome_seconds:p50"), api.scalar("tradesim:order_outcome_seconds:p99")
    requests, errors = api.scalar("tradesim:api_requests:rate"), api.scalar("tradesim:api_5xx:rate")
    firing = [a for a in api.alerts() if a.state == "firing"]
    head = Table.grid(padding=(0, 3))
    head.add_row(Text.assemble("orders/s ", (_fmt(orders), "bold")),
                 Text.assemble("order → outcome p50 ", (_fmt(None if p50 is None else p50 * 1000, " ms", 0), "bold"),
                               " p99 ", (_fmt(None if p99 is None else p99 * 1000, " ms", 0), "bold")),
                 Text.assemble("API req/s ", (_fmt(requests), "bold"), " 5xx/s ", (_fmt(errors, "", 2), "bold")),
                 Text.assemble("alerts firing ", (str(len(firing)), "bold red" if firing else "bold")))

    comps = Table("component", "up", "restarts", "CPU %", "RSS MB", title="components", title_justify="left")
    up = _by(api.query("tradesim_component_up"), "component")
    restarts = _by(api.query("tradesim_component_restarts"), "component")
    cpu = _by(api.query("tradesim:component_cpu:rate"), "component")
    rss = _by(api.query("tradesim_component_rss_bytes"), "component")
    for name in sorted(up):
        comps.add_row(name, "yes" if up[name] else Text("no", style="red"), _fmt(restarts.get(name), "", 0),
                      _fmt(None if name not in cpu else cpu[name] * 100),
                      _fmt(None if name not in rss else rss[name] / 2**20, "", 0))

    lags = Table("consumer group", "topic", "lag", title="consumer lag", title_justify="left")
    for s in sorted(api.query("tradesim_consumer_lag"), key=lambda s: s.labels.get("group", "")):
        lags.add_row(s.labels.get("group", ""), s.labels.get("topic", ""), _fmt(s.value, "", 0))
    jobs = Table("Flink job", "running", "restarts", "checkpoint age s", title="jobs", title_justify="left")
    running = _by(api.query("tradesim_flink_job_running"), "flink_job")
    job_restarts = _by(api.query("tradesim_flink_job_restarts"), "flink_job")
    ages = _by(api.query("tradesim_flink_job_checkpoint_age_seconds"), "flink_job")
    for job in sorted(running):
        jobs.add_row(job, "yes" if running[job] else Text("no", style="red"), _fmt(job_restarts.get(job), "", 0),
                     _fmt(ages.get(job), "", 0))
    parts: list[Table] = [head, comps, lags, jobs]
    if firing:
        alerts = Table("alert", "labels", "summary", title="firing", title_justify="left")
        for a in firing:
            alerts.add_row(a.name, _labels(a.labels), a.summary)
        parts.append(alerts)
    return Group(*parts)


@cli_errors
def _top(interval: float, once: bool) -> None:
    api = _api()
    try:
        if once:
            out.print(screen(api))
            return
        with Live(screen(api), console=out, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(screen(api))
    except Unavailable as exc:
        raise _unreachable(exc) from None
    except KeyboardInterrupt:
        return
    finally:
        api.close()
