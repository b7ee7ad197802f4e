"""`tradesim top` against a local HTTP server that answers Prometheus's API from a fixed set of series."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app
from tradesim.testing.foreign import json_server

runner = CliRunner()


@pytest.fixture
def prometheus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, list[dict[str, object]]]]:
    """Query → the series it answers (none for a query not in it); `tradesim` in this test reads from it."""
    series: dict[str, list[dict[str, object]]] = {}

    def answer(target: str) -> object:
        url = urlsplit(target)
        if url.path == "/api/v1/alerts":
            data: dict[str, object] = {"alerts": []}
        else:
            (query,) = parse_qs(url.query)["query"]
            data = {"resultType": "vector", "result": series.get(query, [])}
        return {"status": "success", "data": data}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    with json_server(answer) as url:
        monkeypatch.setenv("TRADESIM_OBSERVABILITY__PROMETHEUS_URL", url)
        yield series


def _series(value: float, **labels: str) -> dict[str, object]:
    return {"metric": labels, "value": [0, str(value)]}


def test_series_without_a_component_or_job_label_are_left_out_not_a_traceback(
        prometheus: dict[str, list[dict[str, object]]]) -> None:
    """A probe: a series of the same name without `component` / `flink_job` (a foreign exporter on the same
    Prometheus, a recording rule that summed the label away) stopped `top` with a KeyError traceback."""
    for metric in ("tradesim_component_up", "tradesim_component_restarts", "tradesim_component_rss_bytes"):
        prometheus[metric] = [_series(1, component="kafka", job="exporter"), _series(7, job="foreign")]
    prometheus["tradesim:component_cpu:rate"] = [_series(0.25, component="kafka"), _series(9)]
    for metric in ("tradesim_flink_job_running", "tradesim_flink_job_restarts",
                   "tradesim_flink_job_checkpoint_age_seconds"):
        prometheus[metric] = [_series(1, flink_job="execution"), _series(3, job="foreign")]
    shown = runner.invoke(app, ["top", "--once"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "Traceback" not in shown.output
    rows = [line.split("│")[1:-1] for line in shown.output.splitlines() if line.count("│") > 2]
    cells = [[cell.strip() for cell in row] for row in rows]
    assert ["kafka", "yes", "1", "25.0", "0"] in cells
    assert ["execution", "yes", "1", "1"] in cells
    assert len([row for row in cells if row[0] not in ("component", "Flink job")]) == 2  # no row for the others


def test_label_values_that_are_not_text_are_shown_not_a_traceback(
        prometheus: dict[str, list[dict[str, object]]]) -> None:
    """A probe: an answer whose label value was a JSON number (not Prometheus's, which are strings) beside a string
    one stopped `top` with a TypeError traceback (names of two types cannot be sorted)."""
    prometheus["tradesim_component_up"] = [_series(1, component="kafka"),
                                           {"metric": {"component": 5}, "value": [0, "1"]}]
    shown = runner.invoke(app, ["top", "--once"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in shown.output.splitlines()
             if line.count("│") > 2]
    assert [row[0] for row in cells if row[0] != "component"][:2] == ["5", "kafka"]
