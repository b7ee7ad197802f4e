"""The Prometheus component's generated configuration."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tradesim.settings import Settings, load_settings
from tradesim.stack.prometheus import KEPT_WINDOW, RULE_FILES, RULES_DIR, Prometheus

#: Prometheus's duration grammar (model.ParseDuration): units in descending order, whole numbers only
DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")


@pytest.mark.parametrize(("interval_s", "written"), [(5, "5000ms"), (2.5, "2500ms"), (0.0001, "1ms")])
def test_the_scrape_interval_is_a_duration_prometheus_reads(settings: Settings, interval_s: float,
                                                           written: str) -> None:
    """A probe: 2.5 was written `2.5s`, which Prometheus refuses (no decimal point in a duration): it never started."""
    comp = Prometheus(load_settings(home=settings.home, cache_dir=settings.cache_dir,
                                    observability={"scrape_interval_s": interval_s}))
    comp.configure()
    config = yaml.safe_load(comp.config_path.read_text())
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == written
    assert DURATION.match(written)


UNIT_S = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
#: the range of each rate() in an expression (histogram_quantile's too)
RATE_RANGE = re.compile(r"\brate\([^()\[]*\[([^\]]+)\]")


def _seconds(duration: str) -> float:
    assert DURATION.match(duration), duration
    return sum(int(n) * UNIT_S[unit] for n, unit in re.findall(r"(\d+)(ms|[ywdhms])", duration))


def _rate_ranges_s(rule_files: list[Path]) -> list[float]:
    ranges = [_seconds(r) for path in rule_files for group in yaml.safe_load(path.read_text())["groups"]
              for rule in group["rules"] for r in RATE_RANGE.findall(rule["expr"])]
    assert len(ranges) >= 6  # the recording rules' rates were found
    return ranges


@pytest.mark.parametrize(("interval_s", "window_s"), [(5, 60), (15, 60), (40, 160), (90, 360), (2.6, 60)])
def test_rates_are_over_four_scrape_intervals_at_least_a_minute(settings: Settings, interval_s: float,
                                                                window_s: float) -> None:
    """A probe: every rate was over [1m] whatever the interval, and rate() needs two samples in its window: with
    a scrape every 40 s `top` showed `-` half the time, with 60 s or more always."""
    comp = Prometheus(load_settings(home=settings.home, cache_dir=settings.cache_dir,
                                    observability={"scrape_interval_s": interval_s}))
    comp.configure()
    config = yaml.safe_load(comp.config_path.read_text())
    assert set(_rate_ranges_s([Path(f) for f in config["rule_files"]])) == {window_s}


#: every range in an expression (rate's, increase's, ...)
ANY_RANGE = re.compile(r"\[([^\]:]+)\]")


@pytest.mark.parametrize(("interval_s", "restarts_s"), [(5, 600), (90, 600), (300, 1200)])
def test_no_range_is_shorter_than_the_rate_window(settings: Settings, interval_s: float, restarts_s: float) -> None:
    """The restarts alert's increase over [10m] had no two samples in its range above a 5-minute interval: it could
    never fire. Longer ranges stay as they are."""
    comp = Prometheus(load_settings(home=settings.home, cache_dir=settings.cache_dir,
                                    observability={"scrape_interval_s": interval_s}))
    comp.configure()
    window_s = comp.settings.observability.rate_window_s
    exprs = {rule.get("alert", rule.get("record")): rule["expr"]
             for path in yaml.safe_load(comp.config_path.read_text())["rule_files"]
             for group in yaml.safe_load(Path(path).read_text())["groups"] for rule in group["rules"]}
    assert min(_seconds(r) for expr in exprs.values() for r in ANY_RANGE.findall(expr)) >= window_s
    assert [_seconds(r) for r in ANY_RANGE.findall(exprs["TradesimJobRestarting"])] == [restarts_s]


def test_the_kept_rules_have_the_window_of_the_interval_docker_scrapes_at() -> None:
    """The kept rule files serve the docker runtime as they are (docker/prometheus.yml loads them): their window
    must be the one the native runtime would write for docker's interval, and the only one, so a copy replaces
    every window."""
    docker = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker" / "prometheus.yml").read_text())
    interval_s = _seconds(docker["global"]["scrape_interval"])
    assert docker["global"]["evaluation_interval"] == docker["global"]["scrape_interval"]
    expected = load_settings(observability={"scrape_interval_s": interval_s}).observability.rate_window_s
    assert set(_rate_ranges_s([RULES_DIR / name for name in RULE_FILES])) == {_seconds(KEPT_WINDOW.strip("[]"))}
    assert _seconds(KEPT_WINDOW.strip("[]")) == expected


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian's prometheus package)")
def test_a_rate_scraped_every_90_s_has_a_value(settings: Settings, tmp_path: Path) -> None:
    """Prometheus's own rule engine on the written copy: over [1m] this rate had no value at all."""
    comp = Prometheus(load_settings(home=settings.home, cache_dir=settings.cache_dir,
                                    observability={"scrape_interval_s": 90}))
    comp.configure()
    test = {"rule_files": yaml.safe_load(comp.config_path.read_text())["rule_files"],
            "evaluation_interval": "90s",
            "tests": [{"interval": "90s",
                       "input_series": [{"series": 'tradesim_api_requests_total{status="200"}', "values": "0+180x20"}],
                       "promql_expr_test": [{"expr": "tradesim:api_requests:rate", "eval_time": "15m",
                                             "exp_samples": [{"labels": "tradesim:api_requests:rate", "value": 2}]}]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    done = subprocess.run([str(shutil.which("promtool")), "test", "rules", "test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("interval_s", "lookback_s"), [(5, 300), (100, 300), (600, 1800), (2.5, 300)])
def test_an_instant_query_finds_a_gauge_scraped_less_often_than_every_5_minutes(
        settings: Settings, interval_s: float, lookback_s: int) -> None:
    """A probe: Prometheus looked back 5 minutes (its default) for a gauge's last sample, so with a scrape every
    10 minutes an alert on a gauge (a component down, a lag) found none at an evaluation 6 minutes after a scrape
    and could never fire; `top` showed nothing half the time. Prometheus now looks back three intervals."""
    comp = Prometheus(load_settings(home=settings.home, cache_dir=settings.cache_dir,
                                    observability={"scrape_interval_s": interval_s}))
    assert comp.lookback_s() == lookback_s
    assert lookback_s >= 3 * interval_s  # the last sample after a missed scrape is found


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus (Debian's package)")
def test_prometheus_is_given_the_lookback_as_a_flag_it_reads(settings: Settings) -> None:
    comp = Prometheus(load_settings(home=settings.home, cache_dir=settings.cache_dir,
                                    observability={"scrape_interval_s": 600}))
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in comp.argv()[1:])
    assert _seconds(flags["query.lookback-delta"]) == comp.lookback_s() == 1800
    shown = subprocess.run([comp.argv()[0], "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert "--query.lookback-delta" in shown.stdout + shown.stderr  # a flag this Prometheus reads
