"""The alert rules on what the services export: Prometheus's own rule engine (promtool) on series shaped by the
metrics' real definitions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tradesim.stack.prometheus import RULE_FILES, RULES_DIR

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian's prometheus package)")


def _outcome_buckets() -> list[str]:
    """The `le` of every bucket the market-data service exports for order → outcome."""
    from tradesim.services.marketdata.metrics import ORDER_TO_OUTCOME

    return [s.labels["le"] for s in ORDER_TO_OUTCOME.collect()[0].samples if s.name.endswith("_bucket")]


def _slow_alert_fires(tmp_path: Path, latency_s: float) -> bool:
    """Whether TradesimOrderOutcomeSlow fires after 4 minutes of market orders that all take `latency_s`, 10 every
    15 s."""
    series = [{"series": f'tradesim_order_outcome_seconds_bucket{{le="{le}"}}',
               "values": f"0+{10 if float(le) >= latency_s else 0}x20"} for le in _outcome_buckets()]
    firing = 'count(ALERTS{alertname="TradesimOrderOutcomeSlow", alertstate="firing"})'
    results = {}
    for fired in (False, True):  # promtool checks a value it is given: the one it finds passes
        test = {"rule_files": [str(RULES_DIR / name) for name in RULE_FILES], "evaluation_interval": "15s",
                "tests": [{"interval": "15s", "input_series": series,
                           "promql_expr_test": [{"expr": f"{firing} or vector(0)", "eval_time": "4m",
                                                 "exp_samples": [{"labels": "{}", "value": int(fired)}]}]}]}
        (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
        done = subprocess.run([str(shutil.which("promtool")), "test", "rules", "test.yml"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=False)
        results[fired] = done.returncode == 0
    assert results[True] != results[False], results
    return results[True]


@pytest.mark.parametrize("latency_s", [0.3, 1.2, 1.9, 2.0])
def test_orders_decided_within_2_s_fire_no_slow_alert(tmp_path: Path, latency_s: float) -> None:
    """A probe: no bucket bound at 2 s, the alert's threshold: every order in the (1, 2.5] bucket, the p99 was read
    by interpolation as 2.485 s, so orders all decided in 1.2 s fired TradesimOrderOutcomeSlow."""
    assert not _slow_alert_fires(tmp_path, latency_s)


@pytest.mark.parametrize("latency_s", [2.1, 2.6, 9.0])
def test_orders_decided_in_over_2_s_fire_the_slow_alert(tmp_path: Path, latency_s: float) -> None:
    assert _slow_alert_fires(tmp_path, latency_s)
