"""`tradesim accounts ...`: create (stores the key), list, reset, rotate-key, use, show."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tradesim.cli.errors import cli_errors, said_if_unknown
from tradesim.cli.readout import console, user_param
from tradesim.domain.money import cash_error, cash_text, plain_decimal
from tradesim.settings import Settings, load_settings
from tradesim.stack.errors import StackError, UserError

app = typer.Typer(help="Accounts of the order API (admin key read from the stack folder).", no_args_is_help=True)
out = console()


@app.command("create")
def create(name: Annotated[str, typer.Argument(help="user id: lowercase letters, digits, _.-")],
           cash: Annotated[str, typer.Option("--cash", help="Starting cash.")] = "100000",
           rate_limit: Annotated[int | None, typer.Option("--rate-limit", min=1, max=1_000_000,
                                                          help="Requests/s of this key.")] = None,
           activate: Annotated[bool, typer.Option(
               "--activate/--no-activate",
               help="Make it the active user of the CLI (a first account always becomes active).")] = True) -> None:
    """Create a user with starting cash; its API key is kept in the credentials file (0600)."""
    _create(name, cash, rate_limit, activate)


def cash_param(cash: str) -> str:
    """--cash as the API takes it (1e5 is 100000); raises UserError in the option's terms, not the API's pattern."""
    typed = plain_decimal(cash)
    amount = Decimal("NaN") if typed is None else typed
    if problem := cash_error(amount):
        raise UserError(f"--cash {problem}, got {cash!r}")
    return cash_text(amount)


@cli_errors
def _create(name: str, cash: str, rate_limit: int | None, activate: bool) -> None:
    user_param(name)
    settings = load_settings()
    amount = cash_param(cash)
    created, path, data = create_account(settings, name, amount, rate_limit, activate=activate)
    shown = created.get("starting_cash", amount)  # (shown only: the key is what must not be lost)
    out.print(f"created {created['user_id']} with {shown} cash; key saved to {path}"
              + (" (active)" if data["active"] == name else ""))


def create_account(settings: Settings, name: str, cash: str, rate_limit: int | None = None, *, activate: bool
                   ) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    """POST /accounts and keep the key the API shows once (shown, and an error, if it cannot be kept): the account
    as created, the credentials file and what it holds now. UserError as the API refuses (`account_exists`)."""
    from tradesim.client.api import admin_key, call, load_credentials
    from tradesim.services.api.schemas import AccountCreated

    body: dict[str, object] = {"name": name, "cash": cash}
    if rate_limit is not None:
        body["rate_limit_per_s"] = rate_limit
    load_credentials(settings)  # before the key exists: a bad file must not cost it
    admin = admin_key(settings)
    with said_if_unknown(f"if the account was created, its key is lost: the same create again finishes one whose "
                         f"create did not finish, else `tradesim accounts rotate-key {name}` gives it another"):
        created = call(settings, "POST", "/accounts", admin, json_body=body, shape=AccountCreated)

    def add(data: dict[str, Any]) -> None:
        data["users"][name] = {"user_id": created["user_id"], "api_key": created["api_key"]}
        if activate or not data.get("active"):
            data["active"] = name

    path, data = _saved(settings, name, created["api_key"], add)
    return created, path, data


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every account with its cash and positions (admin)."""
    _list(as_json)


@cli_errors
def _list(as_json: bool) -> None:
    from tradesim.client.api import admin_key, call, load_credentials
    from tradesim.services.api.schemas import AccountList

    settings = load_settings()
    answer = call(settings, "GET", "/accounts", admin_key(settings), shape=AccountList)
    if as_json:
        out.print(json.dumps(answer))
        return
    active = load_credentials(settings).get("active")
    table = Table(title="accounts")
    for col in ("user", "starting cash", "cash", "positions"):
        table.add_column(col)
    for a in answer["accounts"]:
        mark = (" *" if a["user_id"] == active else "") + (" (pending)" if a.get("pending") else "")
        positions = ", ".join(f"{s} {q}" for s, q in sorted(a["positions"].items())) or "-"
        table.add_row(a["user_id"] + mark, a["starting_cash"], a["cash"] or "-", positions)
    out.print(table)


@app.command("reset")
def reset(name: Annotated[str | None, typer.Argument(help="User; default: the active one.")] = None) -> None:
    """Back to the starting cash with no positions (admin)."""
    _reset(name)


@cli_errors
def _reset(name: str | None) -> None:
    from tradesim.client.api import active_key, admin_key, call
    from tradesim.services.api.schemas import ResetDone

    settings = load_settings()
    user = active_key(settings)[0] if name is None else user_param(name)  # "" is a mistake, not "the active one"
    answer = call(settings, "POST", f"/accounts/{user}/reset", admin_key(settings), shape=ResetDone)
    out.print(f"reset {answer['user_id']} to {answer['cash']} cash, no positions")


@app.command("rotate-key")
def rotate_key(name: Annotated[str, typer.Argument(help="The user whose key to replace.")]) -> None:
    """A new API key for NAME (admin); the old key stops working within api.auth_cache_s (30 s by default). The
    new key replaces the old one in the credentials file when it holds the old one."""
    _rotate_key(name)


@cli_errors
def _rotate_key(name: str) -> None:
    from tradesim.client.api import admin_key, call, load_credentials
    from tradesim.services.api.schemas import KeyRotated

    user_param(name)
    settings = load_settings()
    load_credentials(settings)  # before the old key stops working: a bad file must not cost the new one
    admin = admin_key(settings)
    with said_if_unknown(f"if {name}'s key was replaced, the new one is lost: `tradesim accounts rotate-key {name}` "
                         "gives it another"):
        answer = call(settings, "POST", f"/accounts/{name}/rotate-key", admin, shape=KeyRotated)

    def replace(data: dict[str, Any]) -> None:
        if name in data["users"]:
            data["users"][name]["api_key"] = answer["api_key"]

    path, data = _saved(settings, name, answer["api_key"], replace)
    if name in data["users"]:
        out.print(f"new key for {name} saved to {path}; the old one stops working within "
                  f"{settings.api.auth_cache_s:g} s")
    else:
        out.print(f"new key for {name} (shown once): {answer['api_key']}")
        out.print(f"the old one stops working within {settings.api.auth_cache_s:g} s")


def _saved(settings: Settings, name: str, key: str, change: Callable[[dict[str, Any]], None]
           ) -> tuple[Path, dict[str, Any]]:
    """`change` the credentials file as read again under its lock (a parallel command may have changed it since
    this one read it), and the path and content saved; if that fails, show the new key (the API shows it once)
    and exit: 2 for a file that cannot be read any more, 1 for one that cannot be written."""
    from tradesim.client.api import credentials_path, credentials_update

    try:
        with credentials_update(settings) as data:
            change(data)
    except KeyboardInterrupt:  # e.g. while waiting for the lock: saved or not, the key must not be lost
        out.print(f"the new key for {name} (shown once, perhaps not saved): {key}")
        raise
    except (OSError, StackError) as exc:
        out.print(f"the new key for {name} (shown once, not saved): {key}")
        if isinstance(exc, StackError):
            raise
        raise StackError(f"could not save the credentials file: {exc}") from None
    return credentials_path(settings), data


@app.command("use")
def use(name: Annotated[str, typer.Argument(help="A user whose key the credentials file holds.")]) -> None:
    """Make a stored user the active one."""
    _use(name)


@cli_errors
def _use(name: str) -> None:
    from tradesim.client.api import credentials_update

    settings = load_settings()
    with credentials_update(settings) as data:
        if name not in data["users"]:
            raise UserError(f"no stored key for {name!r}; known: {', '.join(sorted(data['users'])) or 'none'}")
        data["active"] = name
    out.print(f"active user: {name}")


@app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The active user's cash and positions."""
    _show(as_json)


@cli_errors
def _show(as_json: bool) -> None:
    from tradesim.client.api import active_key, call
    from tradesim.services.api.schemas import AccountInfo

    settings = load_settings()
    answer = call(settings, "GET", "/accounts/me", active_key(settings)[1], shape=AccountInfo)
    if as_json:
        out.print(json.dumps(answer))
        return
    positions = ", ".join(f"{s} {q}" for s, q in sorted(answer["positions"].items())) or "none"
    out.print(f"{answer['user_id']}: cash {answer['cash']} (started with {answer['starting_cash']}); "
              f"positions: {positions}")
