"""Key bindings: defaults, overrides from `tui.bindings`, and a clear error for an unknown action."""

from __future__ import annotations

import pytest

from tradesim.stack.errors import UserError
from tradesim.tui.bindings import ACTIONS, bindings, keymap, keys_of


def test_every_binding_has_its_action_as_id() -> None:
    assert [b.id for b in bindings()] == list(ACTIONS)  # type: ignore[union-attr]
    assert {"buy", "sell", "cancel", "add_symbol", "remove_symbol", "interval", "account", "help"} <= set(ACTIONS)


def test_overrides_are_checked_and_shown_in_the_help() -> None:
    assert keymap({"buy": "f2", "cancel": "x"}) == {"buy": "f2", "cancel": "x"}
    assert keymap({"cancel": "delete", "remove_symbol": "d"}) == {"cancel": "delete", "remove_symbol": "d"}
    assert keymap({"buy": "minus", "sell": "slash", "cancel": "less_than_sign"})  # Textual's own names
    assert keys_of("buy", {"buy": "f2"}) == "f2"
    assert keys_of("help", {}) == "? / f1"
    with pytest.raises(UserError, match="unknown action 'bye'; actions: buy, sell"):
        keymap({"bye": "x"})
    with pytest.raises(UserError, match="tui.bindings.buy"):
        keymap({"buy": " "})


@pytest.mark.parametrize(("overrides", "message"), [
    # Textual keeps one binding of a shared key and drops the other without a word (before: accepted)
    ({"buy": "s"}, r"buy \('s'\) and sell \('s'\) would share one key"),
    ({"cancel": "delete"}, r"cancel \('delete'\) and remove_symbol \('delete'\) would share"),
    ({"buy": "f1"}, r"buy \('f1'\) and help \('f1'\)"),
    ({"buy": "?"}, r"buy \('\?'\) and help \('question_mark'\)"),  # one key, however written
    ({"buy": "enter"}, "'enter' is taken by the TUI itself"), ({"buy": "ctrl+m"}, "is taken by the TUI"),
    # the lists move their cursor with these, so a binding there never fired (a probe; before: accepted)
    ({"buy": "end"}, "'end' is taken by the TUI itself"), ({"sell": "pagedown"}, "is taken by the TUI"),
    ({"buy": "notakey"}, "'notakey' is not a key"), ({"buy": "ctrl+"}, r"'ctrl\+' is not a key"),
    ({"buy": "hyperctrl+b"}, "is not a key"), ({"buy": ","}, "a comma key is `comma`"),
])
def test_a_binding_textual_would_not_honour_is_refused(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        keymap(overrides)
