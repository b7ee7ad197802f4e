"""The live market as an on-demand stack component: it runs only after `tradesim market start` asked for it.

The request (scenario, speed, loop) is a small file in the component's folder, written by `market start` and
removed by `market stop`. While it exists, `tradesim up` brings the market back like any server and
`tradesim down` stops it with the rest (keeping the request); without it the market is "stopped" on purpose,
which does not make the stack unhealthy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tradesim.files import replace_text
from tradesim.scenarios.errors import ScenarioError
from tradesim.settings import MAX_LIVE_SPEED, MIN_SPEED, Settings
from tradesim.stack.component import PortSpec, ServiceComponent, answers
from tradesim.stack.state import claim_stack_dir
from tradesim.text import one_line

REQUEST_FILE = "request.json"
#: written by the feed process at its start (run id, event-time start); read by `tradesim market status`
RUN_FILE = "run.json"
START_HINT = "not started: `tradesim market start`"


@dataclass(frozen=True)
class MarketRequest:
    """What `market start` asked for; `scenario` is a name in `scenarios_dir` or an absolute path."""

    scenario: str
    speed: float
    loop: bool

    @classmethod
    def defaults(cls, settings: Settings) -> MarketRequest:
        m = settings.market
        return cls(m.scenario, m.speed, m.loop)


def playable(settings: Settings, scenario: str) -> Path:
    """The file of the scenario the live market would play; raises ScenarioError when it cannot (not found, not
    valid, a recorded CSV that cannot continue past its end)."""
    from tradesim.scenarios.generators import check_live
    from tradesim.scenarios.loader import find_scenario, load_scenario

    path = find_scenario(scenario, settings.scenarios_dir)
    check_live(load_scenario(path))
    return path


def market_dir(settings: Settings) -> Path:
    return settings.stack_dir / MarketService.name


def read_request(settings: Settings) -> MarketRequest | None:
    """The standing request, or None when nobody started the market (an unreadable file counts as none)."""
    try:
        raw = json.loads((market_dir(settings) / REQUEST_FILE).read_text())
        speed = float(raw["speed"])
        if not speed >= MIN_SPEED:  # 0, negative or NaN: no pace the feed takes (it exited 2 at every `up`)
            return None
        # capped: a request stored before the bound must not stop every `up` (the feed refuses a faster pace)
        return MarketRequest(str(raw["scenario"]), min(speed, MAX_LIVE_SPEED), bool(raw["loop"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_request(settings: Settings, request: MarketRequest) -> None:
    """Leave the request in the stack's folder, checked and marked as `up` does before it writes there."""
    claim_stack_dir(settings.stack_dir)
    path = market_dir(settings) / REQUEST_FILE
    replace_text(path, json.dumps(asdict(request)) + "\n")


def clear_request(settings: Settings) -> bool:
    """Withdraw the request; True if there was one."""
    try:
        (market_dir(settings) / REQUEST_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


#: the last scenario file MarketService._unplayable checked: {(path, mtime, size): its problem or None}
_verdict: dict[tuple[str, int, int], str | None] = {}


class MarketService(ServiceComponent):
    name = "market"
    module = "tradesim.services.market"
    needs = ("kafka", "redis")

    def ports(self) -> list[PortSpec]:
        m = self.settings.market
        return [PortSpec(m.host, m.metrics_port, "TRADESIM_MARKET__METRICS_PORT")]

    def address(self) -> str:
        m = self.settings.market
        return f"http://{m.host}:{m.metrics_port}/metrics"

    def not_requested(self) -> str | None:
        """START_HINT without a request; a line saying why when its scenario can no longer run (the file was
        removed or broken since `market start`), so `up`, `status` and the watchdog leave it stopped instead of
        failing on it every time."""
        request = read_request(self.settings)
        if request is None:
            return START_HINT
        problem = self._unplayable(request.scenario)
        if problem is None:
            return None
        return (f"its scenario cannot run: {problem} (`tradesim market start` another scenario, or "
                "`tradesim market stop`)")

    def _unplayable(self, scenario: str) -> str | None:
        """What stops the scenario from playing, or None; the last file's verdict is kept while the file is
        unchanged (the watchdog asks at every poll, the TUI's health line every few seconds)."""
        from tradesim.scenarios.loader import find_scenario

        try:
            path = find_scenario(scenario, self.settings.scenarios_dir)
            info = path.stat()
        except (ScenarioError, OSError) as exc:
            return one_line(exc)
        stamp = (str(path), info.st_mtime_ns, info.st_size)
        if stamp not in _verdict:
            try:
                playable(self.settings, str(path))
                problem = None
            except ScenarioError as exc:
                problem = one_line(exc)
            _verdict.clear()
            _verdict[stamp] = problem
        return _verdict[stamp]

    def argv(self) -> list[str]:
        request = read_request(self.settings) or MarketRequest.defaults(self.settings)
        return [*super().argv(), "--scenario", request.scenario, "--speed", repr(request.speed),
                "--loop" if request.loop else "--no-loop", "--run-file", str(self.dir / RUN_FILE)]

    def check_health(self) -> None:
        answers(self.address(), "market feed metrics")
