"""`up --demo`'s account: a name taken by a create the credentials file holds no key of is told as such."""

from __future__ import annotations

import pytest

from tradesim.cli import accounts, stack
from tradesim.settings import load_settings
from tradesim.stack.errors import UserError


@pytest.mark.parametrize("code", ["account_exists", "account_taken_over"])
def test_a_demo_name_another_create_holds_names_the_way_out(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """`account_taken_over` (a later create of the name finished it) was shown as the API's bare refusal."""

    def refused(*_args: object, **_kwargs: object) -> None:
        raise UserError(f"the account is another create's ({code})")

    monkeypatch.setattr(accounts, "create_account", refused)
    with pytest.raises(UserError, match="has no working key for it: use the credentials file that created it"):
        stack._demo_account(load_settings(), "demo")
