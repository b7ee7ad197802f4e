"""The `Orders` table: one item per order. The API claims it first (`accepted`, with the placing time and the
whole body, which are the order's for good); the execution job marks it when it reaches the book and replaces it
with the terminal outcome.

`OpenOrders` holds a key (user; placing time and order id) for each order a book holds: written before the
`in_book` mark, deleted after the outcome's write. It is only a pointer: `Orders` says whether the order is still
open, so a pointer left behind (a crash between the two writes) hides nothing and is dropped when a listing meets
it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.codec import from_dynamo, recorded, to_dynamo
from tradesim.adapters.dynamodb.errors import DynamoDBError, conditional_write, translate
from tradesim.adapters.dynamodb.tables import OPEN_ORDERS, ORDERS, table_name
from tradesim.domain.events import OrderCancelRequested, OrderOutcome, OrderPlaced
from tradesim.domain.orders import may_rest
from tradesim.domain.settlement import RecordedOutcome
from tradesim.ports import Unavailable

ACCEPTED = "accepted"
log = logging.getLogger("tradesim.dynamodb.orders")


def open_key(order: OrderPlaced) -> dict[str, Any]:
    """The order's pointer in `OpenOrders`: by user, newest last (placing time, then id)."""
    return {"user_id": {"S": order.user_id}, "placed_order": {"S": f"{order.placed_at_ms:015d}#{order.order_id}"}}


def order_item(order: OrderPlaced) -> dict[str, Any]:
    """The item as the API records it (decimals as strings, like on the wire). A scripted order's market times
    are part of its body: `placed_cancel_at_ms` is the cancel time it was placed with (`cancel_at_ms`, written by
    `mark_in_book`, is the one the book holds, which a later cancel may move earlier)."""
    item: dict[str, Any] = {
        "order_id": order.order_id, "user_id": order.user_id, "placed_at_ms": order.placed_at_ms,
        "symbol": order.symbol, "side": order.side, "qty": order.qty, "order_type": order.order_type,
        "time_in_force": order.time_in_force, "status": ACCEPTED,
    }
    if order.limit_price is not None:
        item["limit_price"] = str(order.limit_price)
    if order.stop_price is not None:
        item["stop_price"] = str(order.stop_price)
    if order.client_order_id is not None:
        item["client_order_id"] = order.client_order_id
    if order.at_ms is not None:
        item["at_ms"] = order.at_ms
    if order.cancel_at_ms is not None:
        item["placed_cancel_at_ms"] = order.cancel_at_ms
    return item


def placed_order(item: dict[str, Any]) -> OrderPlaced:
    """The order as first placed, from its stored item (plain form, as `OrderStore.get` returns it)."""
    return OrderPlaced(
        order_id=item["order_id"], user_id=item["user_id"], symbol=item["symbol"], side=item["side"],
        qty=int(item["qty"]), order_type=item["order_type"], time_in_force=item.get("time_in_force", "day"),
        limit_price=None if item.get("limit_price") is None else Decimal(str(item["limit_price"])),
        stop_price=None if item.get("stop_price") is None else Decimal(str(item["stop_price"])),
        client_order_id=item.get("client_order_id"), placed_at_ms=int(item["placed_at_ms"]),
        at_ms=_int_or_none(item.get("at_ms")), cancel_at_ms=_int_or_none(item.get("placed_cancel_at_ms")))


def requested_cancel(item: dict[str, Any]) -> OrderCancelRequested | None:
    """The cancel `OrderStore.mark_cancel_requested` kept on the order's item (plain form), or None."""
    if item.get("cancel_requested_ms") is None:
        return None
    return OrderCancelRequested(order_id=item["order_id"], user_id=item["user_id"], symbol=item["symbol"],
                                requested_at_ms=int(item["cancel_requested_ms"]),
                                at_ms=_int_or_none(item.get("cancel_requested_at")))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def plain_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's JSON (as read or exported) in plain form."""
    out = {k: from_dynamo(v) for k, v in item.items()}
    for k, v in list(out.items()):
        if k in ("qty", "placed_at_ms", "decided_at_ms", "position_after") and v is not None:
            out[k] = int(v)
    return out


class OrderStore:
    """Thread-safe (one shared low-level client)."""

    def __init__(self, db: DynamoDB) -> None:
        self.db = db
        self.table = table_name(db.settings, ORDERS)
        self.open_table = table_name(db.settings, OPEN_ORDERS)

    def claim(self, order: OrderPlaced) -> dict[str, Any] | None:
        """Record the accepted order unless its id is taken. None: this call recorded it; else the stored item
        (whose placing time and body stand, whatever this request says). Raises Unavailable."""
        item = {k: to_dynamo(v) for k, v in order_item(order).items()}
        for _ in range(3):  # the holder may release its claim between our put and our read
            if conditional_write(lambda: self.db.client.put_item(
                    TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(order_id)"),
                    f"record order {order.order_id!r}"):
                return None
            stored = self.get(order.order_id)
            if stored is not None:
                return stored
        raise Unavailable(f"order {order.order_id!r} keeps being claimed and released; retry")

    def release(self, order: OrderPlaced) -> bool:
        """Undo our claim after Kafka refused the order for certain. A claim someone else holds stays, and so does
        one a retry sent again meanwhile (`mark_replayed`) or a book holds. False: nothing was deleted (no such
        claim, or one that stays). Raises Unavailable."""
        return conditional_write(lambda: self.db.client.delete_item(
            TableName=self.table, Key={"order_id": {"S": order.order_id}},
            ConditionExpression="#st = :accepted AND placed_at_ms = :p AND attribute_not_exists(in_book) "
                                "AND attribute_not_exists(replayed)",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={":accepted": {"S": ACCEPTED}, ":p": {"N": str(order.placed_at_ms)}},
        ), f"release order {order.order_id!r}")

    def mark_replayed(self, order: OrderPlaced) -> bool:
        """Note that a retry sends the claimed order again, before it does, so its claimer cannot release it after
        a failed publish of its own. False: the claim is gone (released meanwhile) or no longer `accepted`.
        Raises Unavailable."""
        return conditional_write(lambda: self.db.client.update_item(
            TableName=self.table, Key={"order_id": {"S": order.order_id}}, UpdateExpression="SET replayed = :yes",
            ConditionExpression="#st = :accepted AND placed_at_ms = :p",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={":yes": {"BOOL": True}, ":accepted": {"S": ACCEPTED},
                                       ":p": {"N": str(order.placed_at_ms)}},
        ), f"mark order {order.order_id!r} replayed")

    def mark_cancel_requested(self, cancel: OrderCancelRequested) -> bool:
        """Keep a cancel on its order's claim while the order is `accepted`, so that sending the order again (a
        keyed retry: its first publish may be lost) sends the cancel too, before it. A cancel at once replaces one at
        a market time; of two at market times the earlier stays. False: not kept (the order is decided, not the
        user's, or already cancelled no later). Raises Unavailable."""
        values: dict[str, Any] = {":accepted": {"S": ACCEPTED}, ":u": {"S": cancel.user_id},
                                  ":r": {"N": str(cancel.requested_at_ms)}}
        condition = "#st = :accepted AND user_id = :u"
        if cancel.at_ms is None:
            update = "SET cancel_requested_ms = :r REMOVE cancel_requested_at"
        else:
            update = "SET cancel_requested_ms = :r, cancel_requested_at = :a"
            condition += " AND (attribute_not_exists(cancel_requested_ms) OR cancel_requested_at > :a)"
            values[":a"] = {"N": str(cancel.at_ms)}
        return conditional_write(lambda: self.db.client.update_item(
            TableName=self.table, Key={"order_id": {"S": cancel.order_id}}, UpdateExpression=update,
            ConditionExpression=condition, ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues=values,
        ), f"keep the cancel of order {cancel.order_id!r}")

    def mark_in_book(self, order: OrderPlaced) -> bool:
        """Note that the order reached the book (it rests there), so readers keep it open past the processing
        deadline, with the market time it will be cancelled at if it has one; creates the item for an order that
        bypassed the API. Never replaces an outcome: False then.
        Raises Unavailable."""
        # the pointer first, so an order a book holds is always found by `open_by_user`; a pointer the store
        # refuses (no such table: a job newer than the stack) must not cost the order its mark
        try:
            self.db.client.put_item(TableName=self.open_table, Item=open_key(order))
        except (BotoCoreError, ClientError) as exc:
            error = translate(exc, f"note order {order.order_id!r} open")
            if isinstance(error, Unavailable):
                raise error from None
            log.warning("open order not noted: %s", error)
        fields = {k: v for k, v in order_item(order).items() if k != "order_id"}
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": to_dynamo(v) for i, v in enumerate(fields.values())}
        sets = ", ".join(f"#f{i} = if_not_exists(#f{i}, :v{i})" for i in range(len(fields)))
        extra = ""
        due = order.cancel_due_ms
        if due is not None:  # the book's cancel time: the latest mark carries the earliest
            extra = ", cancel_at_ms = :cancel_at"
            values[":cancel_at"] = to_dynamo(due)
        marked = conditional_write(lambda: self.db.client.update_item(
            TableName=self.table, Key={"order_id": {"S": order.order_id}},
            UpdateExpression=f"SET {sets}, in_book = :yes{extra}",
            ConditionExpression="attribute_not_exists(order_id) OR #st = :accepted",
            ExpressionAttributeNames={**names, "#st": "status"},
            ExpressionAttributeValues={**values, ":yes": {"BOOL": True}, ":accepted": {"S": ACCEPTED}},
        ), f"mark order {order.order_id!r} in the book")
        if not marked:  # decided already: no longer open
            self._forget_open([order], f"forget order {order.order_id!r} open")
        return marked

    def open_by_user(self, user_id: str, *, limit: int, max_read: int,
                     symbol: str | None = None) -> list[dict[str, Any]]:
        """The user's newest `limit` orders a book holds (`accepted` in `Orders`; of `symbol` if given), however
        many orders came after them, newest first; at most `max_read` pointers are read, so a call's work is
        bounded. A pointer whose order is decided is dropped on the way (best effort); one without an item stays
        (its order may be on its way). Raises Unavailable."""
        request: dict[str, Any] = {"TableName": self.open_table, "KeyConditionExpression": "user_id = :u",
                                   "ExpressionAttributeValues": {":u": {"S": user_id}}, "ConsistentRead": True,
                                   "ScanIndexForward": False}
        found: list[dict[str, Any]] = []
        read = 0
        while len(found) < limit and read < max_read:
            try:
                answer = self.db.client.query(**request, Limit=min(100, max_read - read))
            except (BotoCoreError, ClientError) as exc:
                raise translate(exc, f"list the open orders of {user_id!r}") from None
            ids = [i["placed_order"]["S"].partition("#")[2] for i in answer.get("Items", [])]
            read += len(ids)
            items = [plain_item(i) for i in self._batch_get(ids, None, {}, f"read the open orders of {user_id!r}")]
            open_ = {i["order_id"]: i for i in items if i.get("status") == ACCEPTED and i.get("user_id") == user_id}
            found += [open_[o] for o in ids if o in open_ and (symbol is None or open_[o]["symbol"] == symbol)]
            decided = [placed_order(i) for i in items if i["order_id"] not in open_ and i.get("user_id") == user_id]
            if decided:
                self._forget_open(decided, f"forget {len(decided)} decided orders of {user_id!r}")
            if "LastEvaluatedKey" not in answer:
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found[:limit]

    def note_open_orders(self) -> int:
        """A pointer for every order `Orders` shows in a book: for a stack whose `OpenOrders` is new (or restored
        from a backup made before it). Returns the count. Raises Unavailable."""
        request: dict[str, Any] = {"TableName": self.table, "FilterExpression": "#st = :accepted AND in_book = :yes",
                                   "ExpressionAttributeNames": {"#st": "status"},
                                   "ExpressionAttributeValues": {":accepted": {"S": ACCEPTED}, ":yes": {"BOOL": True}}}
        n = 0
        try:
            while True:
                answer = self.db.client.scan(**request)
                held = [placed_order(plain_item(i)) for i in answer.get("Items", [])]
                self._write_all(self.open_table, [{"PutRequest": {"Item": open_key(o)}} for o in held],
                                "note the open orders")
                n += len(held)
                if "LastEvaluatedKey" not in answer:
                    return n
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "note the open orders") from None

    def held_in_books(self) -> list[OrderPlaced]:
        """Every order `Orders` shows in a book (`accepted`, `in_book`), found through `OpenOrders`' pointers (a
        scan of the pointers only: one per resting order, plus any a crash left behind). Raises Unavailable."""
        request: dict[str, Any] = {"TableName": self.open_table}
        held: list[OrderPlaced] = []
        try:
            while True:
                answer = self.db.client.scan(**request)
                ids = [i["placed_order"]["S"].partition("#")[2] for i in answer.get("Items", [])]
                items = map(plain_item, self._batch_get(ids, None, {}, "read the orders held in books"))
                for item in items:
                    if item.get("status") == ACCEPTED and item.get("in_book"):
                        try:
                            held.append(placed_order(item))
                        except (ValidationError, KeyError, ValueError) as exc:  # another release's: left as it is
                            log.warning("order %r in a book not read: %s", item.get("order_id"), exc)
                if "LastEvaluatedKey" not in answer:
                    return sorted(held, key=lambda o: (o.placed_at_ms, o.order_id))
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "list the orders held in books") from None

    def _forget_open(self, orders: Sequence[OrderPlaced], what: str) -> None:
        """Delete these orders' pointers, best effort: a pointer left behind hides nothing (`Orders` says the order
        is decided) and a later listing drops it."""
        try:
            self._write_all(self.open_table, [{"DeleteRequest": {"Key": open_key(o)}} for o in orders], what,
                            attempts=1)
        except (Unavailable, DynamoDBError) as exc:
            log.warning("%s: %s", what, exc)

    def existing(self, order_ids: list[str]) -> set[str]:
        """Which of these orders have an item. Raises Unavailable."""
        return {i["order_id"]["S"] for i in self._batch_get(order_ids, "order_id", {}, "check orders exist")}

    def decided(self, order_ids: list[str]) -> dict[str, RecordedOutcome]:
        """The recorded outcome (status, reason, fill_price, fee, decided_at_ms) of those orders whose item holds
        a terminal status; strongly consistent. The portfolio store's archive (see PortfolioStore). Raises
        Unavailable."""
        found: dict[str, RecordedOutcome] = {}
        for item in self._batch_get(order_ids, "order_id, #st, reason, fill_price, fee, decided_at_ms",
                                    {"#st": "status"}, "read decided orders"):
            plain = plain_item(item)
            if plain.get("status") not in (None, ACCEPTED) and "decided_at_ms" in plain:
                found[plain.pop("order_id")] = recorded(plain)
        return found

    def _batch_get(self, order_ids: list[str], projection: str | None, names: dict[str, str],
                   what: str) -> list[dict[str, Any]]:
        """Strongly consistent BatchGetItem of these keys (any number), raw items (whole, without a
        `projection`). Raises Unavailable."""
        items: list[dict[str, Any]] = []
        for start in range(0, len(order_ids), 100):  # BatchGetItem takes at most 100 keys
            keys: list[dict[str, Any]] = [{"order_id": {"S": o}} for o in dict.fromkeys(order_ids[start:start + 100])]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            if projection is not None:
                request[self.table]["ProjectionExpression"] = projection
            if names:
                request[self.table]["ExpressionAttributeNames"] = names
            try:
                while request:
                    answer = self.db.client.batch_get_item(RequestItems=request)
                    items += answer.get("Responses", {}).get(self.table, [])
                    request = answer.get("UnprocessedKeys") or {}
            except (BotoCoreError, ClientError) as exc:
                raise translate(exc, what) from None
        return items

    def get(self, order_id: str) -> dict[str, Any] | None:
        """The order as stored, or None. Raises Unavailable."""
        try:
            answer = self.db.client.get_item(TableName=self.table, Key={"order_id": {"S": order_id}},
                                             ConsistentRead=True)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"get order {order_id!r}") from None
        item = answer.get("Item")
        return plain_item(item) if item else None

    def by_user(self, user_id: str, *, status: str | Sequence[str] | None = None, symbol: str | None = None,
                limit: int = 100, scan_max: int = 1_000) -> list[dict[str, Any]]:
        """A user's orders, newest first, filtered (`status`: one, or any of several); at most `limit`, found among
        the newest `scan_max` (the work of one call is bounded whatever the user holds). Raises Unavailable."""
        request: dict[str, Any] = {
            "TableName": self.table, "IndexName": "by_user", "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}}, "ScanIndexForward": False,
        }
        filters = []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            names = [f":st{i}" for i in range(len(statuses))]
            filters.append(f"#st IN ({', '.join(names)})")
            request.setdefault("ExpressionAttributeNames", {})["#st"] = "status"
            request["ExpressionAttributeValues"].update({n: {"S": s} for n, s in zip(names, statuses, strict=True)})
        if symbol is not None:
            filters.append("symbol = :sym")
            request["ExpressionAttributeValues"][":sym"] = {"S": symbol}
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        found: list[dict[str, Any]] = []
        budget = limit if not filters else max(limit, scan_max)  # items DynamoDB may read, filtered or not
        try:
            while len(found) < limit and budget > 0:
                request["Limit"] = min(budget, max(limit - len(found), 100) if filters else limit - len(found))
                answer = self.db.client.query(**request)
                budget -= int(answer.get("ScannedCount", request["Limit"]))
                found += [plain_item(i) for i in answer.get("Items", [])]
                if "LastEvaluatedKey" not in answer:
                    break
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"list orders of {user_id!r}") from None
        return found[:limit]

    def record_outcome(self, order: OrderPlaced, outcome: OrderOutcome) -> bool:
        """Set the terminal status from the recorded outcome; idempotent. False if another terminal status is
        already there (cannot happen while outcomes come from their first record, see record_outcomes).

        One conditional PutItem of the whole item (the order's own fields come from the same event as the
        `accepted` write, so nothing is lost): dynalite takes half the time of the equivalent UpdateItem.
        Creates the item if no `accepted` write came first, so the order stays listable. Raises Unavailable.
        """
        return conditional_write(lambda: self.db.client.put_item(
            TableName=self.table, Item=outcome_item(order, outcome),
            ConditionExpression="attribute_not_exists(#st) OR #st = :accepted OR #st = :st",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={":accepted": {"S": ACCEPTED}, ":st": {"S": outcome.status}},
        ), f"record outcome of order {order.order_id!r}")

    def record_first(self, order: OrderPlaced, outcome: OrderOutcome) -> RecordedOutcome | None:
        """Record the order's outcome unless it has one: None if this call did, else the one recorded first (the
        archive as the first writer, for an outcome the portfolio item could not take). Raises Unavailable."""
        if conditional_write(lambda: self.db.client.put_item(
                TableName=self.table, Item=outcome_item(order, outcome),
                ConditionExpression="attribute_not_exists(#st) OR #st = :accepted",
                ExpressionAttributeNames={"#st": "status"}, ExpressionAttributeValues={":accepted": {"S": ACCEPTED}},
        ), f"record outcome of order {order.order_id!r}"):
            return None
        return self.decided([order.order_id]).get(order.order_id) or RecordedOutcome(status="")

    def record_outcomes(self, decided: list[tuple[OrderPlaced, OrderOutcome]]) -> None:
        """record_outcome for many orders in BatchWriteItem calls of 25 (the execution job's mirror).

        Unconditional, and still safe: each order has exactly one recorded outcome (first written on the portfolio
        item, or by `record_first` when the item could not take it), and the job mirrors only that one, so a put
        can only replace `accepted` or the same terminal item; and `accepted` is written only where no item
        exists. Raises Unavailable (then none, some or all were written; repeating is harmless).
        """
        latest = {order.order_id: (order, outcome) for order, outcome in decided}  # one put per key per call
        self._write_all(self.table, [{"PutRequest": {"Item": outcome_item(o, out)}} for o, out in latest.values()],
                        f"record the outcomes of {len(latest)} orders")
        # then no longer open (if a book ever held it); the outcomes above are what must not wait for this
        self._forget_open([o for o, _ in latest.values() if may_rest(o)], f"forget {len(latest)} orders open")

    def _write_all(self, table: str, writes: list[dict[str, Any]], what: str, attempts: int | None = None) -> None:
        """Put or delete requests in BatchWriteItem calls of 25; what the store leaves unprocessed is sent again,
        up to `attempts` times per call (None: until done). Raises Unavailable."""
        try:
            for start in range(0, len(writes), 25):  # BatchWriteItem takes at most 25 requests
                request: dict[str, Any] = {table: writes[start:start + 25]}
                backoff, left = 0.01, attempts
                while request and (left is None or left > 0):
                    request = self.db.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                    left = None if left is None else left - 1
                    if request and left != 0:  # throttled (real DynamoDB): the SDK's advice is to back off first
                        time.sleep(backoff)
                        backoff = min(backoff * 2, 1.0)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, what) from None


def outcome_item(order: OrderPlaced, outcome: OrderOutcome) -> dict[str, Any]:
    """The order's item once decided, in DynamoDB's typed form."""
    item = order_item(order) | {"status": outcome.status, "decided_at_ms": outcome.decided_at_ms}
    if outcome.reason is not None:
        item["reason"] = outcome.reason
    if outcome.fill_price is not None:
        item["fill_price"] = str(outcome.fill_price)
    if outcome.fee is not None:
        item["fee"] = str(outcome.fee)
    return {k: to_dynamo(v) for k, v in item.items()}
