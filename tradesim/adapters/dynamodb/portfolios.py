"""Portfolios: cash, positions and each order's recorded outcome in one item per user.

Every change is one conditional UpdateItem, so an order's outcome and its cash/position change are written
together or not at all, and a replayed order id finds the first outcome instead of applying twice. (dynalite
has no transactions; single-item conditional writes run unchanged on real DynamoDB.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.errors import is_condition_failed, translate
from tradesim.adapters.dynamodb.tables import PORTFOLIOS, table_name
from tradesim.domain.errors import (
    DomainError,
    InsufficientFunds,
    InsufficientShares,
    InvalidRecord,
    OutcomeAlreadyRecorded,
    PortfolioExists,
    PortfolioNotFound,
    VersionConflict,
)

_to_dynamo = TypeSerializer().serialize
_from_dynamo = TypeDeserializer().deserialize
#: a failed condition is re-checked against a fresh read; if the item moved in between (e.g. a credit landed),
#: the write is retried this many times in all before giving up with VersionConflict
_CONDITION_ATTEMPTS = 3


@dataclass(frozen=True)
class Portfolio:
    """One user's item as stored."""

    user_id: str
    cash: Decimal
    positions: dict[str, int] = field(default_factory=dict)
    version: int = 0
    #: order id → the outcome recorded for it (status, cash_delta, symbol, qty_delta and caller details)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def position(self, symbol: str) -> int:
        return self.positions.get(symbol, 0)


def _outcome(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    if "qty_delta" in out:
        out["qty_delta"] = int(out["qty_delta"])
    return out


def _portfolio(item: Mapping[str, Any]) -> Portfolio:
    data = {k: _from_dynamo(v) for k, v in item.items()}
    return Portfolio(
        user_id=data["user_id"],
        cash=data["cash"],
        positions={s: int(q) for s, q in data.get("positions", {}).items()},
        version=int(data.get("version", 0)),
        outcomes={o: _outcome(v) for o, v in data.get("outcomes", {}).items()},
    )


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRecord(name, "must be a non-empty string")


def _require_decimal(name: str, value: object) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidRecord(name, f"must be a finite Decimal, got {value!r}")


def _require_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(name, f"must be an integer, got {value!r}")


class PortfolioStore:
    """Create, read and change portfolios; thread-safe (one shared low-level client)."""

    def __init__(self, db: DynamoDB) -> None:
        self.db = db
        self.table = table_name(db.settings, PORTFOLIOS)

    def create(self, user_id: str, cash: Decimal) -> Portfolio:
        """Raises PortfolioExists, InvalidRecord, Unavailable."""
        _require_text("user_id", user_id)
        _require_decimal("cash", cash)
        if cash < 0:
            raise InvalidRecord("cash", f"must not be negative, got {cash}")
        portfolio = Portfolio(user_id=user_id, cash=cash)
        item = {"user_id": user_id, "cash": cash, "positions": {}, "outcomes": {}, "version": 0}
        try:
            self.db.client.put_item(
                TableName=self.table,
                Item={k: _to_dynamo(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(user_id)",
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"create portfolio {user_id!r}", PortfolioExists(user_id)) from None
        return portfolio

    def get(self, user_id: str) -> Portfolio | None:
        """Strongly consistent read; None if the user has no portfolio. Raises Unavailable."""
        try:
            answer = self.db.client.get_item(TableName=self.table, Key={"user_id": {"S": user_id}},
                                             ConsistentRead=True)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"get portfolio {user_id!r}") from None
        item = answer.get("Item")
        return _portfolio(item) if item else None

    def apply_fill(self, user_id: str, order_id: str, cash_delta: Decimal, symbol: str, qty_delta: int, *,
                   status: str = "executed", details: Mapping[str, str] | None = None) -> Portfolio:
        """Record the order's outcome and apply its cash/position change at once; returns the new portfolio.

        Raises OutcomeAlreadyRecorded (carrying the first outcome), InsufficientFunds, InsufficientShares,
        PortfolioNotFound, VersionConflict, InvalidRecord, Unavailable.
        """
        _require_text("user_id", user_id)
        _require_text("order_id", order_id)
        _require_text("symbol", symbol)
        _require_text("status", status)
        _require_decimal("cash_delta", cash_delta)
        _require_int("qty_delta", qty_delta)
        outcome: dict[str, Any] = {**(details or {}), "status": status, "cash_delta": cash_delta,
                                   "symbol": symbol, "qty_delta": qty_delta}
        names = {"#o": order_id}
        values: dict[str, Any] = {":dc": cash_delta, ":out": outcome, ":one": 1}
        conditions = ["attribute_exists(user_id)", "attribute_not_exists(outcomes.#o)"]
        updates = ["cash = cash + :dc", "outcomes.#o = :out", "version = version + :one"]
        if cash_delta < 0:
            conditions.append("cash >= :need_cash")
            values[":need_cash"] = -cash_delta
        if qty_delta != 0:
            names["#s"] = symbol
            values.update({":dq": qty_delta, ":zero": 0})
            updates.append("positions.#s = if_not_exists(positions.#s, :zero) + :dq")
        if qty_delta < 0:
            conditions.append("positions.#s >= :need_qty")
            values[":need_qty"] = -qty_delta
        request = {
            "TableName": self.table,
            "Key": {"user_id": {"S": user_id}},
            "UpdateExpression": "SET " + ", ".join(updates),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {k: _to_dynamo(v) for k, v in values.items()},
            "ReturnValues": "ALL_NEW",
        }
        what = f"apply order {order_id!r} to portfolio {user_id!r}"
        for _ in range(_CONDITION_ATTEMPTS):
            try:
                answer = self.db.client.update_item(**request)
            except ClientError as exc:
                if not is_condition_failed(exc):
                    raise translate(exc, what) from None
            except BotoCoreError as exc:
                raise translate(exc, what) from None
            else:
                return _portfolio(answer["Attributes"])
            refusal = self._refusal(self.get(user_id), user_id, order_id, cash_delta, symbol, qty_delta)
            if refusal is not None:
                raise refusal
        raise VersionConflict(f"{what}: the item kept changing; retry")

    @staticmethod
    def _refusal(current: Portfolio | None, user_id: str, order_id: str, cash_delta: Decimal, symbol: str,
                 qty_delta: int) -> DomainError | None:
        """Which part of the condition failed, judged on a fresh read; None if it would hold now."""
        if current is None:
            return PortfolioNotFound(user_id)
        if order_id in current.outcomes:
            return OutcomeAlreadyRecorded(order_id, current.outcomes[order_id])
        if current.cash + cash_delta < 0:
            return InsufficientFunds(f"{user_id}: cash {current.cash} cannot cover {-cash_delta}")
        if current.position(symbol) + qty_delta < 0:
            return InsufficientShares(f"{user_id}: holds {current.position(symbol)} {symbol}, needs {-qty_delta}")
        return None
