"""The main screen's key bindings, overridable per action with `tui.bindings` (action → keys) in tradesim.toml.

Each binding's id is its action name, which is what Textual's keymap looks up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding, BindingType
from textual.keys import KEY_ALIASES, KEY_NAME_REPLACEMENTS, Keys, _character_to_key, key_to_character

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
    ("↑ ↓ pgup pgdn home end", "move in a list (the watchlist selects the chart's symbol)"),
    ("enter", "ticket: place the order"),
    ("escape", "close a dialog"),
    ("ctrl+q", "quit"),
)


_BUILT_IN_KEYS = ("ctrl+p", "tab", "shift+tab", "up", "down", "pageup", "pagedown", "home", "end", "enter", "escape",
                  "ctrl+q")
#: the keys of BUILT_IN and the names Textual gives them too (ctrl+m is enter), which no action may take
RESERVED = frozenset({*_BUILT_IN_KEYS, *(alias for key in _BUILT_IN_KEYS for alias in KEY_ALIASES.get(key, ()))})
_MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_KEY_NAMES = frozenset({k.value for k in Keys} | set(KEY_NAME_REPLACEMENTS.values()))


def _as_textual_names(key: str) -> str | None:
    """The key as Textual names it in its events (`?` is `question_mark`), or None if Textual cannot match it:
    modifiers, then one character, a key name (`f2`, `delete`, `minus`) or a character's name (`comma`)."""
    *modifiers, base = key.split("+")
    if not base or not set(modifiers) <= _MODIFIERS:
        return None
    if len(base) == 1:
        if not base.isprintable() or base.isspace():
            return None
        base = _character_to_key(base)
    elif base not in _KEY_NAMES and key_to_character(base) is None:
        return None
    return "+".join([*modifiers, base])


def bindings() -> list[BindingType]:
    return [Binding(k.keys, k.action, k.label, show=k.show, id=k.action, tooltip=k.help) for k in KEYS]


def keymap(overrides: Mapping[str, str]) -> dict[str, str]:
    """Textual's keymap for `tui.bindings`; raises UserError naming an unknown action, a key Textual cannot match,
    or a key two actions would share (Textual would silently keep one of them) or a built-in one has."""
    unknown = sorted(set(overrides) - set(ACTIONS))
    if unknown:
        raise UserError(f"tui.bindings: unknown action {', '.join(map(repr, unknown))}; actions: "
                        f"{', '.join(ACTIONS)}")
    owner: dict[str, tuple[str, str]] = {}  # Textual's name of a key → (action, the key as written)
    for k in KEYS:
        for key in (part.strip() for part in overrides.get(k.action, k.keys).split(",")):
            if k.action in overrides and not key:
                raise UserError(f"tui.bindings.{k.action}: give keys separated by commas, e.g. \"f2\" or "
                                "\"d,delete\" (a comma key is `comma`)")
            name = _as_textual_names(key)
            if name is None:
                raise UserError(f"tui.bindings.{k.action}: {key!r} is not a key (e.g. \"f2\", \"ctrl+b\", \"x\")")
            if name in RESERVED:
                raise UserError(f"tui.bindings.{k.action}: {key!r} is taken by the TUI itself")
            if name in owner:
                action, written = owner[name]
                raise UserError(f"tui.bindings: {action} ({written!r}) and {k.action} ({key!r}) would share one key; "
                                "give one of them another")
            owner[name] = (k.action, key)
    return dict(overrides)


def keys_of(action: str, overrides: Mapping[str, str]) -> str:
    """The keys an action is bound to, as the help shows them."""
    default = next(k.keys for k in KEYS if k.action == action)
    return overrides.get(action, default).replace("question_mark", "?").replace(",", " / ")
