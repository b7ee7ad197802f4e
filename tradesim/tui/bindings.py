"""The main screen's key bindings, overridable per action with `tui.bindings` (action → keys) in tradesim.toml.

Each binding's id is its action name, which is what Textual's keymap looks up."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding, BindingType
from textual.keys import Keys

from tradesim.stack.errors import UserError


@dataclass(frozen=True)
class Key:
    action: str
    keys: str
    label: str
    help: str
    show: bool = True


KEYS = (
    Key("buy", "b", "Buy", "order ticket to buy the selected symbol"),
    Key("sell", "s", "Sell", "order ticket to sell the selected symbol"),
    Key("cancel", "c", "Cancel", "cancel the selected open order"),
    Key("add_symbol", "a", "Add", "add a symbol to the watchlist"),
    Key("remove_symbol", "d,delete", "Remove", "remove the selected symbol from the watchlist"),
    Key("interval", "i", "1s/1m", "chart: switch between 1 s and 1 min bars"),
    Key("account", "u", "Account", "switch to another account of the credentials file"),
    Key("refresh", "r", "Refresh", "reload portfolio and orders from the API", show=False),
    Key("help", "question_mark,f1", "Help", "this list"),
    Key("quit", "q", "Quit", "quit"),
)
ACTIONS = tuple(k.action for k in KEYS)
#: keys Textual itself handles on every screen, listed in the help
BUILT_IN = (
    ("ctrl+p", "command palette: buy, sell, cancel, switch account, theme, …"),
    ("tab / shift+tab", "next / previous panel"),
    ("↑ ↓", "move in a list (the watchlist selects the chart's symbol)"),
    ("enter", "ticket: place the order"),
    ("escape", "close a dialog"),
    ("ctrl+q", "quit"),
)


#: the keys of BUILT_IN, which an action may not take from them
RESERVED = frozenset({"ctrl+p", "tab", "shift+tab", "up", "down", "enter", "escape", "ctrl+q"})
_MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_KEY_NAMES = frozenset(k.value for k in Keys)


def _is_key(key: str) -> bool:
    """A key Textual can match: modifiers, then one character, a key name (`f2`, `delete`) or a character's
    name (`question_mark`)."""
    *modifiers, base = key.split("+")
    if not base or not set(modifiers) <= _MODIFIERS:
        return False
    if base in _KEY_NAMES or (len(base) == 1 and base.isprintable() and not base.isspace()):
        return True
    try:
        unicodedata.lookup(base.replace("_", " "))
    except KeyError:
        return False
    return True


def bindings() -> list[BindingType]:
    return [Binding(k.keys, k.action, k.label, show=k.show, id=k.action, tooltip=k.help) for k in KEYS]


def keymap(overrides: Mapping[str, str]) -> dict[str, str]:
    """Textual's keymap for `tui.bindings`; raises UserError naming an unknown action, a key Textual cannot match,
    or a key two actions would share (Textual would silently keep one of them) or a built-in one has."""
    unknown = sorted(set(overrides) - set(ACTIONS))
    if unknown:
        raise UserError(f"tui.bindings: unknown action {', '.join(map(repr, unknown))}; actions: "
                        f"{', '.join(ACTIONS)}")
    owner: dict[str, str] = {}
    for k in KEYS:
        for key in (part.strip() for part in overrides.get(k.action, k.keys).split(",")):
            if k.action in overrides and not key:
                raise UserError(f"tui.bindings.{k.action}: give keys separated by commas, e.g. \"f2\" or "
                                "\"d,delete\" (a comma key is `comma`)")
            if not _is_key(key):
                raise UserError(f"tui.bindings.{k.action}: {key!r} is not a key (e.g. \"f2\", \"ctrl+b\", \"x\")")
            if key in RESERVED:
                raise UserError(f"tui.bindings.{k.action}: {key!r} is taken by the TUI itself")
            if key in owner:
                raise UserError(f"tui.bindings: {key!r} would be both {owner[key]!r} and {k.action!r}; give one of "
                                "them another key")
            owner[key] = k.action
    return dict(overrides)


def keys_of(action: str, overrides: Mapping[str, str]) -> str:
    """The keys an action is bound to, as the help shows them."""
    default = next(k.keys for k in KEYS if k.action == action)
    return overrides.get(action, default).replace("question_mark", "?").replace(",", " / ")
