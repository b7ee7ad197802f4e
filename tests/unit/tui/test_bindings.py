"""Key bindings: defaults, overrides from `tui.bindings`, and a clear error for an unknown action."""

from __future__ import annotations

import pytest

from tradesim.stack.errors import UserError
from tradesim.tui.bindings import ACTIONS, bindings, keymap, keys_of


def test_every_binding_has_its_action_as_id() -> None:
    assert [b.id for b in bindings()] == list(ACTIONS)  # type: ignore[union-attr]
    assert {"buy", "sell", "cancel", "add_symbol", "remove_symbol", "interval", "account", "help"} <= set(ACTIONS)


def test_overrides_are_checked_and_shown_in_the_help() -> None:
    assert keymap({"buy": "f2", "cancel": "delete"}) == {"buy": "f2", "cancel": "delete"}
    assert keys_of("buy", {"buy": "f2"}) == "f2"
    assert keys_of("help", {}) == "? / f1"
    with pytest.raises(UserError, match="unknown action 'bye'; actions: buy, sell"):
        keymap({"bye": "x"})
    with pytest.raises(UserError, match="tui.bindings.buy"):
        keymap({"buy": " "})
