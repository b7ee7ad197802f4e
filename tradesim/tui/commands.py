"""The command palette's trading commands (ctrl+p): buy, sell, cancel, switch account, theme, watchlist."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tradesim.stack.errors import UserError

if TYPE_CHECKING:
    from tradesim.tui.app import TradesimApp


class TradingCommands(Provider):
    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app = cast("TradesimApp", self.app)
        symbol = app.model.selected or "a symbol"
        out: list[tuple[str, Callable[[], object], str]] = [
            (f"Buy {symbol}", partial(app.open_ticket, "buy"), "open the order ticket"),
            (f"Sell {symbol}", partial(app.open_ticket, "sell"), "open the order ticket"),
            ("Cancel the selected order", app.cancel_selected, "ask the API to cancel it"),
            ("Add a symbol to the watchlist", app.ask_symbol, ""),
            ("Remove the selected symbol from the watchlist", app.remove_selected, ""),
            ("Chart: switch 1 s / 1 min bars", app.toggle_interval, ""),
            ("Refresh portfolio and orders", app.refresh_from_api, "reload them from the API"),
        ]
        try:
            names = app.account_names()
        except UserError as exc:  # a broken credentials file costs the switch entries, not the whole palette
            names = []
            out.append(("Switch account: unavailable", partial(app.notify, str(exc), severity="error"), str(exc)))
        for name in names:
            out.append((f"Switch account: {name}", partial(app.switch_account, name), ""))
        for theme in sorted(app.available_themes):
            out.append((f"Theme: {theme}", partial(setattr, app, "theme", theme), ""))
        return out

    async def discover(self) -> Hits:
        for name, run, help_text in self.commands():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, run, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
