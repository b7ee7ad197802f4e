"""What the commands share: the `--since`, `--interval`, symbol and order id parameters."""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from tradesim.domain.events import (
    ISO_TIME_RE,
    MIN_QUERY_EPOCH_MS,
    USER_ID_PATTERN,
    epoch_ms,
    is_path_id,
    typed_symbol,
)
from tradesim.stack.errors import UserError

INTERVALS = ("1m", "5m", "1h", "1d")
_DURATION = re.compile(r"^([0-9]{1,15})(s|m|h|d|w)$")  # 15 digits of weeks already reach before the epoch
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_ABSOLUTE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: the read API's query parameters → the options that give them, for its 422s (client.api.call)
OPTIONS = {"from": "--since", "interval": "--interval", "symbol": "--symbol", "side": "--side",
           "status": "--status", "q": "--q"}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer (for scripts).")]
Since = Annotated[str | None, typer.Option(
    "--since", help="From this long ago (90s, 15m, 1h, 2d, 1w) or this time (ISO-8601, UTC unless it says).")]
Interval = Annotated[str, typer.Option("--interval", help="Bucket length: 1m, 5m, 1h or 1d.")]


#: the exit of a command whose reader went away (`| head`): 128 + SIGPIPE, as a shell's own tools end
READER_GONE = 141


def reader_gone() -> NoReturn:
    """End a command whose output's reader went away, quietly: what is left to write goes nowhere, and the exit
    says the command did not finish (not 1, a server problem by the CLI's codes, nor 0: `run ... | head` did
    not check its expectations)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(READER_GONE)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        reader_gone()


def console(*, stderr: bool = False) -> Console:
    """A command's output, as plain text: names, paths and descriptions users wrote may hold [brackets] or :codes:
    and print as written. What is styled says so with `rich.text.Text`."""
    return _Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)


def symbol_param(symbol: str) -> str:
    """The symbol as the API spells it (upper case); raises UserError if it cannot be one."""
    typed = typed_symbol(symbol)
    if typed is None:
        raise UserError(f"invalid symbol {symbol!r}")
    return typed


def symbols_param(symbols: str | None, option: str) -> list[str] | None:
    """A comma-separated list of symbols (None: the option was not given); raises UserError for one that cannot
    be a symbol or a list that names none."""
    if symbols is None:
        return None
    wanted = [symbol_param(s.strip()) for s in symbols.split(",") if s.strip()]
    if not wanted:
        raise UserError(f"{option} names no symbol, got {symbols!r}")
    return wanted


def user_param(name: str) -> str:
    """A user id as the API takes it in a path; raises UserError. Anything else could change the path itself
    ('bob/reset#' would reset bob where a key rotation was asked for)."""
    if not re.fullmatch(USER_ID_PATTERN, name):
        raise UserError(f"{name!r} is not a user id (a lowercase letter or digit, then up to 39 of a-z 0-9 _ . -)")
    return name


def order_id_param(order_id: str) -> str:
    """An order id as the API takes it in a path; raises UserError. Dots alone would be read as a path step
    (`/orders/.` is `/orders`), so such an id is refused here rather than answered with another route's data."""
    if not is_path_id(order_id):
        raise UserError(f"{order_id!r} is not an order id (letters, digits and _.:- only, at most 64)")
    return order_id


def since_param(since: str | None, now_ms: int | None = None) -> str | None:
    """The API's `from` for a `--since` value: epoch ms of a duration ago or of an ISO time; raises UserError."""
    if since is None:
        return None
    text = since.strip()
    duration = _DURATION.match(text)
    if duration:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return _from_ms(now - int(duration.group(1)) * _UNIT_S[duration.group(2)] * 1000)
    if _ABSOLUTE.match(text):
        # read here, so a typo is told in the option's terms and an offset's `+` needs no URL escape; only what
        # the API takes (Python alone reads `T09.5`, ISO's 09:30, as 09:00:00.5)
        try:
            when = datetime.fromisoformat(text) if re.fullmatch(ISO_TIME_RE, text) else None
        except ValueError:
            when = None
        if when is None:
            raise UserError(f"--since: not an ISO-8601 time: {since!r}")
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        return _from_ms(epoch_ms(when))
    raise UserError(f"--since must be a duration like 15m, 1h or 2d, or an ISO-8601 time, got {since!r}")


def _from_ms(ms: int) -> str:
    """A time as the API's digits: 0 for any time before it takes digits (nothing happened then in tradesim)."""
    return str(ms if ms >= MIN_QUERY_EPOCH_MS else 0)


def interval_param(interval: str) -> str:
    if interval not in INTERVALS:
        raise UserError(f"--interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    return interval
