"""Request and response bodies of the API; money is a decimal string, quantities are integers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradesim.domain.events import SYMBOL_RE, OrderType, Side, TimeInForce

#: a positive decimal with at most 4 places, as a string (never a JSON number: floats cannot hold cents)
PRICE_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?$"
CASH_PATTERN = r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,2})?$"
PriceStr = Annotated[str, Field(pattern=PRICE_PATTERN, examples=["101.25"])]
CashStr = Annotated[str, Field(pattern=CASH_PATTERN, examples=["100000.00"])]
UserId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,39}$", examples=["alice"])]
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


class AccountInfo(BaseModel):
    user_id: str
    starting_cash: str
    created_at_ms: int
    cash: str | None = Field(description="current cash (null if the portfolio is missing)")
    positions: dict[str, int]


class AccountList(BaseModel):
    accounts: list[AccountInfo]


class ResetDone(BaseModel):
    user_id: str
    cash: str
    version: int


class OrderRequest(Strict):
    symbol: Annotated[str, Field(pattern=f"^{SYMBOL_RE}$", examples=["ACME"])]
    side: Side
    qty: int = Field(gt=0, le=1_000_000_000, strict=True, description="shares: a positive integer")
    type: OrderType = "market"
    limit_price: PriceStr | None = Field(None, description="required for limit and stop_limit, else absent")
    stop_price: PriceStr | None = Field(None, description="required for stop and stop_limit, else absent")
    time_in_force: TimeInForce = "day"
    client_order_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None

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
    placed_at_ms: int
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
