"""The Prometheus API client against a local HTTP server that answers JSON of other shapes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tradesim.adapters.prometheus.client import PrometheusApi
from tradesim.ports import Unavailable
from tradesim.testing.foreign import json_server


@pytest.fixture
def server() -> Iterator[tuple[PrometheusApi, dict[str, object]]]:
    answer: dict[str, object] = {}

    with json_server(lambda _target: answer["body"]) as url:
        api = PrometheusApi(url)
        try:
            yield api, answer
        finally:
            api.close()


@pytest.mark.parametrize(("call", "body"), [
    ("query", [1, 2]),  # a list (before: AttributeError)
    ("alerts", {"status": "success"}),  # no data (before: KeyError)
    ("query", {"status": "success", "data": {"result": [{"metric": {}, "value": "x"}]}}),
    ("query", {"status": "success", "data": {"result": [{"value": [0, "1"]}]}}),
    ("alerts", {"status": "success", "data": {"alerts": [{"labels": "firing"}]}}),
    ("targets", {"status": "success", "data": {"activeTargets": "all"}}),
])
def test_json_that_is_not_prometheuss_is_unavailable_not_a_traceback(
        server: tuple[PrometheusApi, dict[str, object]], call: str, body: object) -> None:
    """A probe: `tradesim top`/`alerts` printed a traceback for a JSON answer of another shape."""
    api, answer = server
    answer["body"] = body
    read = {"query": lambda: api.query("up"), "alerts": api.alerts, "targets": api.targets}[call]
    with pytest.raises(Unavailable, match="is not Prometheus"):
        read()


def test_prometheuss_own_answers_are_read(server: tuple[PrometheusApi, dict[str, object]]) -> None:
    api, answer = server
    answer["body"] = {"status": "success", "data": {"result": [
        {"metric": {"job": "api"}, "value": [0, "1"]}, {"metric": {"job": "x"}, "value": [0, "NaN"]}]}}
    assert [(s.labels, s.value) for s in api.query("up")] == [({"job": "api"}, 1.0)]
    answer["body"] = {"status": "success", "data": {"alerts": [
        {"labels": {"alertname": "A", "severity": "page"}, "state": "firing", "activeAt": None}]}}
    (alert,) = api.alerts()
    assert (alert.name, alert.state, alert.severity, alert.active_at) == ("A", "firing", "page", "")
