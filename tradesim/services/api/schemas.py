"""Request and response bodies of the API; money is a decimal string, quantities are integers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradesim.domain.events import (
    CASH_DIGITS,
    MAX_EPOCH_MS,
    MAX_PRICE,
    MAX_QTY,
    PATTERN_WORDS,
    SYMBOL_RE,
    USER_ID_PATTERN,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tradesim.domain.trades import Sort
from tradesim.text import validation_message

#: a positive decimal with at most 4 places, as a string (never a JSON number: floats cannot hold cents)
PRICE_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?$"
CASH_PATTERN = rf"^(0|[1-9][0-9]{{0,{CASH_DIGITS - 1}}})(\.[0-9]{{1,2}})?$"
# C0, DEL, C1, line separators, zero-width and bidirectional controls: each can rewrite or hide part of a terminal
# line that shows the reference
CLIENT_ORDER_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+$"
#: what a value refused by one of the API's patterns must look like, in words (a regular expression says little)
_PATTERN_WORDS = {
    **PATTERN_WORDS,
    PRICE_PATTERN: "must be a price like 101.25: up to 12 digits, a point and up to 4 decimals; no sign, no exponent",
    CASH_PATTERN: f"must be an amount like 100000.00: up to {CASH_DIGITS} digits, a point and up to 2 decimals; no "
                  "sign, no exponent",
    CLIENT_ORDER_ID_PATTERN: "must hold no control, zero-width or bidirectional characters",
}


def field_message(error: dict[str, Any]) -> str:
    """A request field's message for a person: a value a pattern refused says what it must look like."""
    pattern = (error.get("ctx") or {}).get("pattern")
    return _PATTERN_WORDS[pattern] if pattern in _PATTERN_WORDS else validation_message(error)


PriceStr = Annotated[str, Field(pattern=PRICE_PATTERN, examples=["101.25"])]
CashStr = Annotated[str, Field(pattern=CASH_PATTERN, examples=["100000.00"])]
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, examples=["alice"])]
OrderStatusStr = Literal["accepted", "executed", "rejected", "cancelled", "expired"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountCreate(Strict):
    name: UserId = Field(description="user id: lowercase letters, digits, `_.-`; unique")
    cash: CashStr = Field(description="starting cash")
    rate_limit_per_s: int | None = Field(None, ge=1, le=1_000_000, strict=True, description="this key's requests/s; "
                                         "default: the API's setting")


class AccountCreated(BaseModel):
    user_id: str
    api_key: str = Field(description="shown once; only its hash is stored")
    starting_cash: str


class KeyRotated(BaseModel):
    user_id: str
    api_key: str = Field(description="the new key, shown once; the old one stops working within api.auth_cache_s")


class AccountInfo(BaseModel):
    user_id: str
    starting_cash: str
    created_at_ms: int
    cash: str | None = Field(description="current cash (null if the portfolio is missing)")
    positions: dict[str, int]
    pending: bool = Field(False, description="its create has not finished (its key was never shown): a create of it "
                          "again finishes it")


class AccountList(BaseModel):
    accounts: list[AccountInfo]


class ResetDone(BaseModel):
    user_id: str
    cash: str
    version: int


class OrderRequest(Strict):
    symbol: Annotated[str, Field(pattern=f"^{SYMBOL_RE}$", examples=["ACME"])]
    side: Side
    qty: int = Field(gt=0, le=MAX_QTY, strict=True, description="shares: a positive integer")
    type: OrderType = "market"
    limit_price: PriceStr | None = Field(None, description="required for limit and stop_limit, else absent")
    stop_price: PriceStr | None = Field(None, description="required for stop and stop_limit, else absent")
    time_in_force: TimeInForce = "day"
    client_order_id: Annotated[str, Field(
        min_length=1, max_length=64,
        pattern=CLIENT_ORDER_ID_PATTERN,
        description="your own reference, up to 64 characters, no control characters")] | None = None
    at_ms: int | None = Field(
        None, ge=0, le=MAX_EPOCH_MS, strict=True,
        description="scripted runs: the order's time on the market's clock (tick event time, epoch ms); the "
        "execution job holds the order until the ticks pass that time and matches it on the quote in effect then; "
        "the API's price and balance pre-check is skipped (the job decides at that time)")
    cancel_at_ms: int | None = Field(
        None, ge=0, le=MAX_EPOCH_MS, strict=True,
        description="scripted runs: cancel the order, if still open, once the ticks pass this market time")

    @model_validator(mode="after")
    def _prices_match_type(self) -> OrderRequest:
        needs_limit = self.type in ("limit", "stop_limit")
        needs_stop = self.type in ("stop", "stop_limit")
        if needs_limit != (self.limit_price is not None):
            raise ValueError(f"limit_price is {'required' if needs_limit else 'not allowed'} for a {self.type} order")
        if needs_stop != (self.stop_price is not None):
            raise ValueError(f"stop_price is {'required' if needs_stop else 'not allowed'} for a {self.type} order")
        for name in ("limit_price", "stop_price"):
            value = getattr(self, name)
            if value is not None and Decimal(value) <= 0:
                raise ValueError(f"{name} must be positive")
            if value is not None and Decimal(value) > MAX_PRICE:
                raise ValueError(f"{name} must be at most {MAX_PRICE}")
        if self.at_ms is not None and self.cancel_at_ms is not None and self.cancel_at_ms <= self.at_ms:
            raise ValueError("cancel_at_ms must be after at_ms")
        return self


class OrderAccepted(BaseModel):
    order_id: str
    status: Literal["accepted"] = "accepted"


class CancelAccepted(BaseModel):
    order_id: str
    status: Literal["cancel_requested"] = "cancel_requested"


class Order(BaseModel):
    order_id: str
    user_id: str
    symbol: str
    side: Side
    qty: int
    type: OrderType
    limit_price: str | None = None
    stop_price: str | None = None
    time_in_force: TimeInForce
    client_order_id: str | None = None
    status: str = Field(description="accepted, then executed | rejected | cancelled | expired")
    in_book: bool = Field(False, description="accepted and held by the execution job: resting, or a scripted "
                          "order waiting for its market time")
    placed_at_ms: int
    cancel_at_ms: int | None = Field(None, description="market time (tick event time, epoch ms) the book will "
                                     "cancel the order at if it is still open: a scripted `cancel_at_ms` or a "
                                     "cancel sent with `at_ms`, once the book holds it")
    reason: str | None = Field(None, description="why a rejected order was refused, or why one expired "
                               "(`not_processed_in_time`: see `trading.processing_deadline_s`)")
    fill_price: str | None = None
    fee: str | None = None
    decided_at_ms: int | None = None


class OrderList(BaseModel):
    orders: list[Order]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="per backing service: `ok` or the error")


TradeStatusStr = OrderStatus
SortStr = Sort


class Position(BaseModel):
    """One holding, valued at the latest price. Cost fields are null when the analytics read model did not answer
    (see `degraded`) or has not seen the position's fills yet."""

    symbol: str
    qty: int = Field(description="shares held (the ledger's count)")
    average_cost: str | None = Field(description="cost basis per share, fees included (average-cost method)")
    cost_basis: str | None = Field(description="what the shares held cost, fees included: unrealized P&L = "
                                   "market value − this (average cost × qty differs by the average's rounding)")
    realized_pnl: str | None = Field(description="what sales of this symbol realized: proceeds − fees − cost")
    last_price: str | None = Field(description="the latest quote's `last` from the price cache; null: none yet")
    price_age_ms: int | None = Field(description="how long ago the price cache got that quote")
    price_stale: bool = Field(description="no price, or older than the order check accepts")
    market_value: str | None = Field(description="qty × last price")
    unrealized_pnl: str | None = Field(description="market value − cost basis")
    day_reference_price: str | None = Field(description="the previous close: the last fill of the symbol (any "
                                            "user) before 00:00 UTC today")
    day_change: str | None = Field(description="qty × (last price − previous close); null without a fill before "
                                   "today")


class Portfolio(BaseModel):
    """Cash and positions from the ledger (strongly consistent), prices from the price cache, cost basis and
    P&L from the analytics read model."""

    user_id: str
    as_of_ms: int = Field(description="when the ledger read began, epoch ms: an outcome decided (`decided_at_ms`) "
                          "after it is not in `cash` and `positions`, nor one decided just before whose write had "
                          "not landed yet")
    cash: str
    positions: list[Position] = Field(description="held symbols, by symbol")
    market_value: str | None = Field(description="Σ market values; null if a held symbol has no price")
    equity: str | None = Field(description="cash + market value")
    realized_pnl: str | None = Field(description="Σ realized P&L, closed positions included")
    unrealized_pnl: str | None = Field(description="Σ unrealized P&L; null if one is unknown")
    day_change: str | None = Field(description="Σ day changes; null if one is unknown")
    degraded: list[Literal["analytics"]] = Field(
        description="read models that did not answer: their fields are null (`analytics`: average cost, P&L and "
        "day change)")


class Trade(BaseModel):
    """An order's terminal outcome as the search read model holds it."""

    order_id: str
    user_id: str
    symbol: str
    side: Side
    qty: int
    status: TradeStatusStr
    order_type: OrderType | None = Field(description="null for outcomes recorded before 0.14")
    placed_at_ms: int | None = Field(description="null for outcomes recorded before 0.14")
    decided_at_ms: int
    reason: str | None
    price: str | None = Field(description="fill price; executed orders only")
    fee: str | None = Field(description="executed orders only")
    notional: str | None = Field(description="price × qty; executed orders only")


class TradeList(BaseModel):
    trades: list[Trade]
    next_cursor: str | None = Field(description="pass as `cursor` (with the same filters and sort) for the next "
                                    "page; null on the last page")
    total: int = Field(description="how many trades match the filters")


class VolumeRow(BaseModel):
    symbol: str
    start_ms: int = Field(description="bucket start, epoch ms (aligned to the interval; days start 00:00 UTC)")
    shares: int
    notional: str
    trades: int = Field(description="executed orders")
    vwap: str = Field(description="notional ÷ shares")


class Volume(BaseModel):
    user_id: str | None = Field(description="whose volume; null: the whole market (admin)")
    interval: str
    from_ms: int
    to_ms: int
    buckets: list[VolumeRow] = Field(description="by symbol, then start; buckets without trades left out")


class PnlRow(BaseModel):
    end_ms: int = Field(description="bucket end, epoch ms (the last one is `to`)")
    realized_pnl: str = Field(description="realized P&L of fills before end_ms")
    equity: str | None = Field(description="cash + positions at the last fill prices before end_ms; null if a "
                               "held symbol had no fill yet")


class PnlSeries(BaseModel):
    user_id: str
    interval: str
    from_ms: int
    to_ms: int
    cash: str = Field(description="cash now (the ledger's); earlier cash is derived from it and the fills")
    points: list[PnlRow]
