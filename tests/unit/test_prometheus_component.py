"""The Prometheus component's generated configuration."""

from __future__ import annotations

import re

import pytest
import yaml

from tradesim.settings import Settings, load_settings
from tradesim.stack.prometheus import Prometheus

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
