"""The faults `tradesim chaos run` and the fault tests inject through Toxiproxy: one per dependency and kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tradesim.adapters.toxiproxy.client import Toxiproxy, ToxiproxyRefused

Target = Literal["redis", "dynamodb", "kafka"]
Kind = Literal["latency", "bandwidth", "reset", "timeout", "down"]
TOXIC = "tradesim-chaos"

# kind → (Toxiproxy toxic type, attributes, what it does); "down" disables the proxy instead
KINDS: dict[Kind, tuple[str, dict[str, int], str]] = {
    "latency": ("latency", {"latency": 300, "jitter": 100}, "every reply 300 ± 100 ms late"),
    "bandwidth": ("bandwidth", {"rate": 8}, "replies at 8 KB/s"),
    "reset": ("reset_peer", {"timeout": 500}, "connections reset 0.5 s after they open"),
    "timeout": ("timeout", {"timeout": 0}, "data stops; connections hang until the fault ends"),
    "down": ("", {}, "refuses connections and drops the open ones"),
}


@dataclass(frozen=True)
class Fault:
    target: Target
    kind: Kind

    @property
    def name(self) -> str:
        return f"{self.target}-{self.kind}"

    @property
    def description(self) -> str:
        return f"{self.target}: {KINDS[self.kind][2]}"

    def apply(self, tox: Toxiproxy) -> None:
        """Raises ToxiproxyRefused if this fault is in place already (another run's: its end would undo this)."""
        if self.kind == "down":
            if any(p.name == self.target and not p.enabled for p in tox.proxies()):
                raise ToxiproxyRefused(f"{self.target} is down already (another `tradesim chaos run`?)", 409)
            tox.set_enabled(self.target, False)
            return
        toxic, attributes, _ = KINDS[self.kind]
        tox.add_toxic(self.target, TOXIC, toxic, attributes)

    def remove(self, tox: Toxiproxy) -> bool:
        """False if the fault was gone already (`tradesim chaos clear` meanwhile)."""
        if self.kind == "down":
            was_down = any(p.name == self.target and not p.enabled for p in tox.proxies())
            tox.set_enabled(self.target, True)
            return was_down
        return tox.remove_toxic(self.target, TOXIC)


FAULTS: dict[str, Fault] = {f.name: f for f in (Fault(t, k) for t in ("redis", "dynamodb", "kafka") for k in KINDS)}
