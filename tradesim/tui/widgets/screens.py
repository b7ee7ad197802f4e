"""Dialogs: the order ticket, adding a watchlist symbol, switching account, and the help screen."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static

from tradesim.client.api import ApiError, ApiUnreachable
from tradesim.domain.events import typed_symbol
from tradesim.tui.bindings import BUILT_IN, KEYS, keys_of
from tradesim.tui.model import CODE_FIELDS, field_errors, order_body

#: place(body, idempotency key) → order id; raises ApiError / ApiUnreachable
Place = Callable[[dict[str, Any], str], Awaitable[str]]

DIALOG_CSS = """
    align: center middle;
    & > Vertical { width: 60; height: auto; max-height: 100%; border: round $accent; background: $surface;
                   padding: 0 1; }
    Label.title { text-style: bold; width: 1fr; }
    .hint { color: $text-muted; }
"""


class TicketScreen(ModalScreen[str | None]):
    """An order ticket. It owns one Idempotency-Key for its whole life: Enter twice (or a retry after a lost
    answer) sends the same key and body, which the API answers with the same order, never a second one."""

    DEFAULT_CSS = """
    TicketScreen {
    """ + DIALOG_CSS + """
        VerticalScroll { height: auto; max-height: 24; }
        .field { height: 1; margin-top: 1; }
        .field > Label { width: 15; }
        .field > Input, .field > Select { width: 1fr; }
        .error { color: $error; padding-left: 15; height: auto; }
        .error.-empty { display: none; }
        #err-general { padding-left: 0; }
        #place { margin-top: 1; width: 100%; }
    }
    """
    BINDINGS = [Binding("escape", "close", "Close", show=False)]
    FIELDS = (("side", "side"), ("symbol", "symbol"), ("qty", "qty"), ("type", "type"),
              ("limit_price", "limit price"), ("stop_price", "stop price"), ("time_in_force", "time in force"))

    def __init__(self, side: str, symbol: str, place: Place, user: str) -> None:
        super().__init__()
        self.side, self.symbol, self.place, self.user = side, symbol, place, user
        self.idempotency_key = "tui-" + uuid.uuid4().hex
        self.sending = False
        self.sent = 0  # POSTs this ticket made (a test reads it)
        self.errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="ticket"):
            yield Label(f"Order ticket · {self.user}", classes="title")
            with VerticalScroll():
                for name, label in self.FIELDS:
                    with Horizontal(classes="field"):
                        yield Label(label)
                        yield self._input(name)
                    yield Static("", id=f"err-{name}", classes="error -empty")
                yield Static("", id="err-general", classes="error -empty")
                yield Button(self._button_label(), id="place", variant="success" if self.side == "buy" else "error",
                             compact=True)
                yield Label("enter: place · esc: close", classes="hint")

    def _input(self, name: str) -> Input | Select[str]:
        if name == "side":
            return Select([("buy", "buy"), ("sell", "sell")], value=self.side, allow_blank=False, id="side",
                          compact=True)
        if name == "type":
            return Select([(t.replace("_", " "), t) for t in ("market", "limit", "stop", "stop_limit")],
                          value="market", allow_blank=False, id="type", compact=True)
        if name == "time_in_force":
            return Select([("day", "day"), ("gtc (until cancelled)", "gtc"), ("ioc (now or never)", "ioc")],
                          value="day", allow_blank=False, id="time_in_force", compact=True)
        value = self.symbol if name == "symbol" else ""
        hint = {"qty": "shares", "limit_price": "e.g. 101.25", "stop_price": "e.g. 99.50"}.get(name, "")
        return Input(value, placeholder=hint, id=name, compact=True, disabled=name.endswith("_price"))

    def on_mount(self) -> None:
        self.query_one("#qty", Input).focus()

    def _button_label(self) -> str:
        return f"Place {self.side} order"

    def form(self) -> dict[str, str]:
        out = {}
        for name, _ in self.FIELDS:
            widget = self.query_one(f"#{name}")
            out[name] = str(widget.value) if isinstance(widget, Input | Select) else ""
        return out

    @on(Select.Changed, "#type")
    def _type_changed(self, event: Select.Changed) -> None:
        kind = str(event.value)
        self.query_one("#limit_price", Input).disabled = kind not in ("limit", "stop_limit")
        self.query_one("#stop_price", Input).disabled = kind not in ("stop", "stop_limit")

    @on(Select.Changed, "#side")
    def _side_changed(self, event: Select.Changed) -> None:
        self.side = str(event.value)
        button = self.query_one("#place", Button)
        button.label = self._button_label()
        button.variant = "success" if self.side == "buy" else "error"

    @on(Input.Submitted)
    @on(Button.Pressed, "#place")
    def _submit(self) -> None:
        self.submit()

    def submit(self) -> None:
        if self.sending:
            return  # the first Enter's request is still out: a second one must not send anything
        body, errors = order_body(self.form())
        self.show_errors(errors)
        if body is None:
            return
        self.sending = True
        self._send(body)

    @work(exclusive=True, group="ticket")
    async def _send(self, body: dict[str, Any]) -> None:
        self.show_errors({"": "placing…"})
        try:
            self.sent += 1
            order_id = await self.place(body, self.idempotency_key)
        except ApiError as exc:
            if exc.status >= 500:  # perhaps placed: only this very order may go with this key
                self._hold()
            self.show_errors(self.api_errors(exc))
        except ApiUnreachable as exc:
            self._hold()
            self.show_errors({"": f"{exc}; enter tries again (the same order, never a second one)"})
        else:
            self.dismiss(order_id)
            return
        finally:
            self.sending = False

    def _hold(self) -> None:
        """After a send whose outcome is unknown the fields are frozen: the order may have been placed, and its key
        only ever carries this body (an edited retry would be refused; a new ticket could place it twice)."""
        for name, _ in self.FIELDS:
            self.query_one(f"#{name}").disabled = True
        self.query_one("#place", Button).focus()

    @staticmethod
    def api_errors(exc: ApiError) -> dict[str, str]:
        if exc.errors:
            return field_errors(exc.errors)
        return {CODE_FIELDS.get(exc.code, ""): f"{exc.message} ({exc.code})"}

    def show_errors(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        for name, _ in (*self.FIELDS, ("general", "")):
            text = errors.get("" if name == "general" else name, "")
            box = self.query_one(f"#err-{name}", Static)
            box.update(Text(text))  # API messages are not markup
            box.set_class(not text, "-empty")

    def error_of(self, name: str) -> str:
        """The error shown next to a field ("" for none, "" as name: the ticket's own line)."""
        return self.errors.get(name, "")

    def action_close(self) -> None:
        if self.sending:  # closing would cancel a request the API may act on: its order placed, nobody told
            self.show_errors({"": "placing…: the ticket closes once the API answers (the order may be placed)"})
            return
        self.dismiss(None)


class SymbolScreen(ModalScreen[str | None]):
    """Ask for a symbol to add to the watchlist."""

    DEFAULT_CSS = """
    SymbolScreen {
    """ + DIALOG_CSS + """
        & > Vertical { width: 40; }
        .error { color: $error; }
    }
    """
    BINDINGS = [Binding("escape", "close", "Close", show=False)]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Add to the watchlist", classes="title")
            yield Input(placeholder="symbol, e.g. AAPL", id="symbol")
            yield Static("", id="error", classes="error")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        symbol = typed_symbol(event.value.strip())
        if symbol is None:
            self.query_one("#error", Static).update(Text(f"{event.value!r} is not a symbol"))
            return
        self.dismiss(symbol)

    def action_close(self) -> None:
        self.dismiss(None)


class AccountScreen(ModalScreen[str | None]):
    """Pick another account of the credentials file."""

    DEFAULT_CSS = """
    AccountScreen {
    """ + DIALOG_CSS + """
        & > Vertical { width: 40; }
        OptionList { height: auto; max-height: 12; }
    }
    """
    BINDINGS = [Binding("escape", "close", "Close", show=False)]

    def __init__(self, names: Sequence[str], current: str) -> None:
        super().__init__()
        self.names, self.current = list(names), current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Switch account", classes="title")
            yield OptionList(*[f"{n}{'  (current)' if n == self.current else ''}" for n in self.names])
            yield Label("enter: switch · esc: close", classes="hint")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.names[event.option_index])

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every binding with its current keys (after `tui.bindings`)."""

    DEFAULT_CSS = """
    HelpScreen {
    """ + DIALOG_CSS + """
        & > Vertical { width: 76; }
        #keys { height: auto; }
    }
    """
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close", show=False)]

    def __init__(self, overrides: Mapping[str, str]) -> None:
        super().__init__()
        #: (keys, what they do), as listed
        self.rows = [(keys_of(k.action, overrides), k.help) for k in KEYS] + list(BUILT_IN)

    def compose(self) -> ComposeResult:
        width = max(len(k) for k, _ in self.rows) + 2
        text = "\n".join(f"[b]{escape(k.ljust(width))}[/b]{escape(what)}" for k, what in self.rows)
        with Vertical():
            yield Label("Keys", classes="title")
            yield Static(text, id="keys")
            # a Static wraps at the dialog's width (a Label was cut there, with the bindings hint)
            yield Static("Panels: watchlist · chart of the selected symbol · portfolio · open orders · executions. "
                         "Bindings: tui.bindings in tradesim.toml.", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
