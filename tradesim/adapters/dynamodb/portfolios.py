"""Portfolios: cash, positions and each order's recorded outcome in one item per user.

Every change is one conditional write (an UpdateItem, or a PutItem on the version of this store's copy; see
apply_fill), so an order's outcome and its cash/position change are written together or not at all, and a
replayed order id finds the first outcome instead of applying twice. A group (see group()) puts several such
changes in one conditional write. (dynalite has no transactions; single-item conditional writes run unchanged
on real DynamoDB.)

The item must stay small: DynamoDB caps it at 400 KB, and dynalite parses and rewrites the whole item on every
update, so each recorded outcome makes every later write of that user slower (and LevelDB rewrites the bytes
again when it compacts). With an *archive* (the `Orders` table, where the job mirrors every outcome) an outcome
leaves the item a few seconds after its decision, once the archive holds it, and `archived_upto` on the item
bounds the `placed_at_ms` of every order whose outcome left: an order placed later cannot have an outcome
outside the item, so its write checks the item alone (the common case, one UpdateItem); an older order (a replay
from far back) is looked up in the archive first, and its write then requires `archived_n` (how many outcomes
ever left) unchanged, so no outcome can leave the item between that look-up and the write. (`archived_upto`
would not do for that check: an outcome placed before the mark leaving later does not move it.)
Without an archive, pruning is by age alone and safe only beyond the replay horizon (see `prune`).

`n_outcomes` counts what is kept, so the API can refuse a user who would outgrow the item without reading every
outcome. The encoding of items and outcomes lives in `codec`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Context as DecimalContext
from decimal import Decimal, Inexact, Overflow
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.codec import (
    Portfolio,
    decode_outcome,
    encode_outcome,
    from_dynamo,
    portfolio_of,
    to_dynamo,
    written_of,
)
from tradesim.adapters.dynamodb.errors import conditional_write, is_condition_failed, is_item_too_large, translate
from tradesim.adapters.dynamodb.tables import PORTFOLIOS, table_name
from tradesim.domain.errors import (
    DomainError,
    InsufficientFunds,
    InsufficientShares,
    InvalidRecord,
    OutcomeAlreadyRecorded,
    PortfolioExists,
    PortfolioFull,
    PortfolioNotFound,
    VersionConflict,
)
from tradesim.domain.events import OrderOutcome, OrderPlaced
from tradesim.domain.portfolio import Change, Holdings, Written
from tradesim.domain.settlement import RecordedOutcome
from tradesim.ports import OutcomeArchive

log = logging.getLogger("tradesim.dynamodb.portfolios")
#: a failed condition is re-checked against a fresh read; if the item moved in between (e.g. a credit landed),
#: the write is retried this many times in all before giving up with VersionConflict
_CONDITION_ATTEMPTS = 3
#: attributes without the outcomes map: what the API's pre-check and account pages need
_HOLDINGS = "user_id, cash, positions, version, n_outcomes, reset_at_ms"
#: DynamoDB numbers have 38 significant digits (Python's default context rounds at 28)
_EXACT = DecimalContext(prec=38, traps=[Inexact, Overflow])
#: outcomes removed per UpdateItem when pruning (keeps the expression well under DynamoDB's 4 KB)
_PRUNE_BATCH = 200


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRecord(name, "must be a non-empty string")


def _require_decimal(name: str, value: object) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidRecord(name, f"must be a finite Decimal, got {value!r}")


class GroupLost(VersionConflict):
    """A group's changes were not written: the stored item moved (see PortfolioStore.group)."""


def _require_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(name, f"must be an integer, got {value!r}")


class PortfolioStore:
    """Create, read and change portfolios; thread-safe (one shared low-level client).

    `horizon_ms`/`prune_above`: apply_fill prunes outcomes older than the horizon once more than `prune_above`
    are kept (None: never prunes by itself; `prune` can still be called). `archive`: see the module docstring;
    with one, only outcomes the archive holds are pruned, whatever their age.
    """

    def __init__(self, db: DynamoDB, *, horizon_ms: int | None = None, prune_above: int = 250,
                 archive: OutcomeArchive | None = None, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.table = table_name(db.settings, PORTFOLIOS)
        self.horizon_ms = horizon_ms
        self.prune_above = prune_above
        self.archive = archive
        self._clock = clock
        #: clock time before which apply_fill does not try to prune a user again
        self._next_prune: dict[str, float] = {}
        #: user → the whole item (wire form) as this store last wrote or read it; see apply_fill
        self._items: dict[str, dict[str, Any]] = {}
        #: apply_fill for one user runs one at a time in this process (striped locks), so the cached item is not
        #: raced by this process's own writes
        self._locks = [threading.RLock() for _ in range(64)]
        #: user → the stored version its copy builds on while a group holds unwritten changes (None: none yet);
        #: see group()
        self._groups: dict[str, int | None] = {}

    def create(self, user_id: str, cash: Decimal, reset_at_ms: int = 0, create_generation: int = 0) -> Portfolio:
        """A new item (`reset_at_ms`: made by a reset; `create_generation`: stamped by an account create's reset;
        see Portfolio). Raises PortfolioExists, InvalidRecord, Unavailable."""
        _require_text("user_id", user_id)
        _require_decimal("cash", cash)
        _require_int("create_generation", create_generation)
        if cash < 0:
            raise InvalidRecord("cash", f"must not be negative, got {cash}")
        portfolio = Portfolio(user_id=user_id, cash=cash, reset_at_ms=reset_at_ms,
                              create_generation=create_generation)
        item = {"user_id": user_id, "cash": cash, "positions": {}, "outcomes": {}, "version": 0, "n_outcomes": 0}
        if reset_at_ms:
            item["reset_at_ms"] = reset_at_ms
        if create_generation:
            item["create_generation"] = create_generation
        try:
            self.db.client.put_item(
                TableName=self.table,
                Item={k: to_dynamo(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(user_id)",
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"create portfolio {user_id!r}", PortfolioExists(user_id)) from None
        return portfolio

    def get(self, user_id: str) -> Portfolio | None:
        """Strongly consistent read of the whole item; None if the user has no portfolio. Raises Unavailable."""
        return self._read(user_id, None)

    def holdings(self, user_id: str) -> Portfolio | None:
        """Like get() without the outcomes (a small read whatever the item's size). Raises Unavailable."""
        return self._read(user_id, _HOLDINGS)

    def _read(self, user_id: str, projection: str | None) -> Portfolio | None:
        request: dict[str, Any] = {"TableName": self.table, "Key": {"user_id": {"S": user_id}},
                                   "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
        try:
            answer = self.db.client.get_item(**request)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"get portfolio {user_id!r}") from None
        item = answer.get("Item")
        return portfolio_of(item) if item else None

    def apply_fill(self, user_id: str, order_id: str, cash_delta: Decimal, symbol: str, qty_delta: int, *,
                   status: str = "executed", details: Mapping[str, str] | None = None,
                   placed_at_ms: int | None = None) -> Written:
        """Record the order's outcome and apply its cash/position change at once; returns what changed.

        `placed_at_ms` (the order's): with an archive, an order placed after `archived_upto` needs no archive
        look-up; without it every write to an item that archived anything looks the order up first.

        Two ways to the same single conditional write. Once this store has written a user's item, the next write
        puts the whole new item on the condition `version = <the version it wrote>` (optimistic concurrency: every
        writer of the item bumps the version), after checking outcome, funds and shares on its copy; in dynalite
        a PutItem costs half an UpdateItem, and the execution job is the item's only steady writer. Otherwise — no
        copy, a lost race, a refusal, an order that may be archived — an UpdateItem whose condition checks all of
        it on the stored item decides, and its answer becomes the copy.

        Raises OutcomeAlreadyRecorded (carrying the first outcome), InsufficientFunds, InsufficientShares,
        PortfolioNotFound, PortfolioFull, VersionConflict, InvalidRecord, Unavailable.
        """
        _require_text("user_id", user_id)
        _require_text("order_id", order_id)
        _require_text("symbol", symbol)
        _require_text("status", status)
        _require_decimal("cash_delta", cash_delta)
        _require_int("qty_delta", qty_delta)
        if placed_at_ms is not None:
            _require_int("placed_at_ms", placed_at_ms)
            details = {**(details or {}), "placed_at_ms": str(placed_at_ms)}
        outcome = encode_outcome(status, cash_delta, symbol, qty_delta, details or {})
        with self._locks[hash(user_id) % len(self._locks)]:
            copy = self._items.pop(user_id, None)
            if copy is not None:
                new = self._next_item(copy, user_id, order_id, outcome, cash_delta, symbol, qty_delta,
                                      placed_at_ms)
                if new is not None and user_id in self._groups:  # group commit: written by flush_group
                    if self._groups[user_id] is None:
                        self._groups[user_id] = int(copy["version"]["N"])
                    self._items[user_id] = new
                    return written_of(user_id, new, symbol, moved=qty_delta != 0)
                if new is not None and self._put(new, int(copy["version"]["N"]),
                                                 f"apply order {order_id!r} to portfolio {user_id!r}"):
                    self._items[user_id] = new
                    return written_of(user_id, new, symbol, moved=qty_delta != 0)
                if new is None and self._groups.get(user_id) is not None:
                    self._items[user_id] = copy
                    self._write_group(user_id)  # what the group applied goes first, in order
            return self._update(user_id, order_id, outcome, cash_delta, symbol, qty_delta, placed_at_ms)

    def recorded(self, user_id: str, order_id: str) -> RecordedOutcome | None:
        """The outcome recorded for the order: on the user's item (a strongly consistent read), else in the
        archive, which takes an outcome before it leaves the item. Raises Unavailable."""
        current = self.get(user_id)
        if current is not None and order_id in current.outcomes:
            return current.outcomes[order_id]
        return None if self.archive is None else self.archive.decided([order_id]).get(order_id)

    def record_elsewhere(self, order: OrderPlaced, outcome: OrderOutcome) -> None:
        """First the item's mark rises to the order's placing time and counts one more outcome outside the item,
        so a replay looks the order up in the archive (see the module docstring); then the archive takes the
        outcome unless it holds one for the order already. In this order a failure in between leaves no outcome
        anywhere (none was announced either: the order is decided afresh), never one a reader saw and a replay
        misses. Without an archive there is nowhere else: nothing is recorded. Raises OutcomeAlreadyRecorded
        (with the outcome recorded first), Unavailable.

        Left open: an item too full even for the mark (up to ~40 bytes), and a user with no item at all (a reset
        creates one), get the outcome in the archive only, which a replay after the item made room, or after the
        user got a portfolio, does not look at; and two settlers of one user at once (a job attempt that did not
        die) can each decide the order, one here and one on the item."""
        if self.archive is None:
            return
        self._mark_outside(order)
        first = self.archive.record_first(order, outcome)
        if first is not None:
            raise OutcomeAlreadyRecorded(order.order_id, first)

    def _mark_outside(self, order: OrderPlaced) -> None:
        """Raise `archived_upto` to the order's placing time (unless past it already) and count one more outcome
        outside the item in `archived_n`, which also fails a look-up another writer made before."""
        user_id = order.user_id
        values = {":p": {"N": str(order.placed_at_ms)}, ":one": {"N": "1"}, ":zero": {"N": "0"}}
        counted = "archived_n = if_not_exists(archived_n, :zero) + :one, version = version + :one"
        raised = {"UpdateExpression": f"SET archived_upto = :p, {counted}", "ExpressionAttributeValues": values,
                  "ConditionExpression": "attribute_exists(user_id) AND "
                                         "(attribute_not_exists(archived_upto) OR archived_upto < :p)"}
        passed = {"UpdateExpression": f"SET {counted}", "ConditionExpression": "attribute_exists(user_id)",
                  "ExpressionAttributeValues": {k: v for k, v in values.items() if k != ":p"}}
        what = f"mark order {order.order_id!r} as recorded outside the item"
        with self._locks[hash(user_id) % len(self._locks)]:
            if self._groups.get(user_id) is not None:
                self._write_group(user_id)  # (not reached today: the full item's write flushed the group first)
            self._items.pop(user_id, None)  # every writer bumps the version: the copy is stale now
            for request in (raised, passed):  # (the second when the mark is past the order already)
                try:
                    self.db.client.update_item(TableName=self.table, Key={"user_id": {"S": user_id}}, **request)
                    return
                except ClientError as exc:
                    if is_item_too_large(exc):
                        log.warning("no room on the item for the archive mark; the outcome is in the archive only",
                                    extra={"user_id": user_id, "order_id": order.order_id})
                        return
                    if not is_condition_failed(exc):
                        raise translate(exc, what) from None
                except BotoCoreError as exc:
                    raise translate(exc, what) from None

    def group(self, user_id: str) -> None:
        """Group commit: until flush_group, each apply_fill the copy can decide changes only the copy; flush_group
        writes them all with one version-conditioned PutItem. The execution job settles a user's queued orders
        this way, so a busy user's item is written once per batch, not once per order. A write the copy cannot
        decide writes the group's changes first, then itself, so the order of outcomes is kept."""
        with self._locks[hash(user_id) % len(self._locks)]:
            self._groups.setdefault(user_id, None)

    def flush_group(self, user_id: str) -> None:
        """Write the group's changes and end it. Raises GroupLost (none of the unwritten changes were written:
        another writer moved the item; settle those orders again) or Unavailable (written or not: settle again)."""
        with self._locks[hash(user_id) % len(self._locks)]:
            try:
                self._write_group(user_id)
            finally:
                self._groups.pop(user_id, None)

    def end_group(self, user_id: str) -> None:
        """Drop the group and any change it did not write (after a failure)."""
        with self._locks[hash(user_id) % len(self._locks)]:
            if self._groups.pop(user_id, None) is not None:
                self._items.pop(user_id, None)

    def _write_group(self, user_id: str) -> None:
        base = self._groups.get(user_id)
        if base is None:
            return
        self._groups[user_id] = None
        item = self._items.pop(user_id)
        if not self._put(item, base, f"apply a group of orders to portfolio {user_id!r}"):
            raise GroupLost(f"{user_id}: the item changed under a group of writes; none of them were written")
        self._items[user_id] = item

    def _put(self, new: dict[str, Any], version: int, what: str) -> bool:
        """PutItem of the new item if the stored one still has `version`; False if not (or too large)."""
        try:
            self.db.client.put_item(TableName=self.table, Item=new, ConditionExpression="version = :v",
                                    ExpressionAttributeValues={":v": {"N": str(version)}})
        except ClientError as exc:
            if is_condition_failed(exc) or is_item_too_large(exc):
                return False  # another writer (a reset, another job attempt) or too big: the stored item decides
            raise translate(exc, what) from None
        except BotoCoreError as exc:
            raise translate(exc, what) from None
        return True

    def _next_item(self, item: dict[str, Any], user_id: str, order_id: str, outcome: str, cash_delta: Decimal,
                   symbol: str, qty_delta: int, placed_at_ms: int | None) -> dict[str, Any] | None:
        """The item after this write, judged on this store's copy; None: the copy cannot decide, use _update."""
        outcomes = item["outcomes"]["M"]
        if order_id in outcomes:  # recorded outcomes never change: the copy is as good as the item here
            self._items[user_id] = item
            raise OutcomeAlreadyRecorded(order_id, decode_outcome(from_dynamo(outcomes[order_id])))
        upto = int(item["archived_upto"]["N"]) if "archived_upto" in item else None
        if self.archive is not None and upto is not None and (placed_at_ms is None or placed_at_ms <= upto):
            return None
        try:
            cash = _EXACT.add(Decimal(item["cash"]["N"]), cash_delta)
        except (Inexact, Overflow):
            return None  # beyond DynamoDB's numbers: let the store refuse it
        positions = item["positions"]["M"]
        quantity = int(positions[symbol]["N"]) + qty_delta if symbol in positions else qty_delta
        if (cash_delta < 0 and cash < 0) or (qty_delta < 0 and quantity < 0):
            return None  # a refusal is judged on the stored item, which a reset may have changed
        version = int(item["version"]["N"])
        kept = {**outcomes, order_id: {"S": outcome}}
        n_outcomes = int(item["n_outcomes"]["N"]) + 1
        gone, gone_upto = self._due(user_id, kept, n_outcomes)
        for o in gone:
            del kept[o]
        new = {**item, "cash": {"N": str(cash)}, "outcomes": {"M": kept}, "version": {"N": str(version + 1)},
               "n_outcomes": {"N": str(n_outcomes - len(gone))}}
        if qty_delta:
            new["positions"] = {"M": {**positions, symbol: {"N": str(quantity)}}}
        if gone and self.archive is not None:
            new["archived_upto"] = {"N": str(max(upto or 0, gone_upto))}
            new["archived_n"] = {"N": str(int(item.get("archived_n", {"N": "0"})["N"]) + len(gone))}
        return new

    def _update(self, user_id: str, order_id: str, outcome: str, cash_delta: Decimal, symbol: str,
                qty_delta: int, placed_at_ms: int | None) -> Written:
        """The write decided by the stored item: one UpdateItem whose condition checks everything."""
        names = {"#o": order_id}
        values: dict[str, Any] = {":dc": cash_delta, ":out": outcome, ":one": 1, ":zero": 0}
        conditions = ["attribute_exists(user_id)", "attribute_not_exists(outcomes.#o)"]
        updates = ["cash = cash + :dc", "outcomes.#o = :out", "version = version + :one",
                   "n_outcomes = if_not_exists(n_outcomes, :zero) + :one"]
        if cash_delta < 0:
            conditions.append("cash >= :need_cash")
            values[":need_cash"] = -cash_delta
        if qty_delta != 0:
            names["#s"] = symbol
            values[":dq"] = qty_delta
            updates.append("positions.#s = if_not_exists(positions.#s, :zero) + :dq")
        if qty_delta < 0:
            conditions.append("positions.#s >= :need_qty")
            values[":need_qty"] = -qty_delta
        if self.archive is not None:  # the order's outcome cannot be in the archive: see the module docstring
            if placed_at_ms is None:
                conditions.append("attribute_not_exists(archived_upto)")
            else:
                conditions.append("(attribute_not_exists(archived_upto) OR archived_upto < :placed)")
                values[":placed"] = placed_at_ms
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"user_id": {"S": user_id}},
            "UpdateExpression": "SET " + ", ".join(updates),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {k: to_dynamo(v) for k, v in values.items()},
            "ReturnValues": "ALL_NEW",
        }
        what = f"apply order {order_id!r} to portfolio {user_id!r}"
        pruned = False
        for _ in range(_CONDITION_ATTEMPTS):
            try:
                answer = self.db.client.update_item(**request)
            except ClientError as exc:
                if is_item_too_large(exc):
                    if pruned or not self.horizon_ms or not self.prune(user_id, self._now_ms() - self.horizon_ms):
                        raise PortfolioFull(f"{user_id}: too many recent outcomes to record {order_id!r}") from None
                    pruned = True
                    continue
                if not is_condition_failed(exc):
                    raise translate(exc, what) from None
            except BotoCoreError as exc:
                raise translate(exc, what) from None
            else:
                item = answer["Attributes"]
                applied = written_of(user_id, item, symbol, moved=qty_delta != 0)
                self._items[user_id] = item  # (the next write on it prunes, if due)
                return applied
            current = self.get(user_id)
            if (self.archive is not None and current is not None and order_id not in current.outcomes
                    and current.archived_upto is not None
                    and (placed_at_ms is None or placed_at_ms <= current.archived_upto)):
                archived = self.archive.decided([order_id]).get(order_id)
                if archived is not None:  # before the funds check: a replay must re-emit, not re-judge
                    raise OutcomeAlreadyRecorded(order_id, archived)
                # not in the archive as read: write only if nothing has left the item since
                request["ConditionExpression"] = " AND ".join([*conditions[:-1], "archived_n = :seen"])
                request["ExpressionAttributeValues"] = {
                    **{k: v for k, v in request["ExpressionAttributeValues"].items() if k != ":placed"},
                    ":seen": {"N": str(current.archived_n)}}
            refusal = self._refusal(current, user_id, order_id, cash_delta, symbol, qty_delta)
            if refusal is not None:
                raise refusal
        raise VersionConflict(f"{what}: the item kept changing; retry")

    def prune(self, user_id: str, older_than_ms: int) -> int:
        """Remove outcomes decided before `older_than_ms`; returns how many were removed. Raises Unavailable.

        With an archive, only outcomes the archive holds leave, and `archived_upto` records how far (see the module
        docstring). Without one, safe only beyond the replay horizon: an order whose outcome is gone would be
        applied again if it were replayed, so the horizon must outlive `trade_orders` retention (see
        tradesim.stack.kafka.orders_retention). Outcomes without a decision time are kept. Conditional on the
        version read, so it never races a write.
        """
        # Each write bumps the version, like every other writer, so no copy of the item outlives it.
        what = f"prune outcomes of portfolio {user_id!r}"
        try:
            answer = self.db.client.get_item(TableName=self.table, Key={"user_id": {"S": user_id}},
                                             ConsistentRead=True,
                                             ProjectionExpression="outcomes, version, archived_upto")
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, what) from None
        item = answer.get("Item")
        if not item:
            return 0
        expired, upto, _ = self._removable(item.get("outcomes", {"M": {}})["M"], older_than_ms)
        version = int(item["version"]["N"]) if "version" in item else 0
        upto = max(upto, int(item["archived_upto"]["N"]) if "archived_upto" in item else 0)
        removed = 0
        for start in range(0, len(expired), _PRUNE_BATCH):
            chunk = expired[start:start + _PRUNE_BATCH]
            names = {f"#p{i}": o for i, o in enumerate(chunk)}
            values = {":k": {"N": str(len(chunk))}, ":v": {"N": str(version)}, ":next": {"N": str(version + 1)},
                      ":zero": {"N": "0"}}
            update = "REMOVE " + ", ".join(f"outcomes.{n}" for n in names) \
                + " SET n_outcomes = if_not_exists(n_outcomes, :zero) - :k, version = :next"
            if self.archive is not None:  # (all the chunks' mark at once: a mark too high only costs look-ups)
                update += ", archived_upto = :upto, archived_n = if_not_exists(archived_n, :zero) + :k"
                values[":upto"] = {"N": str(upto)}
            self._items.pop(user_id, None)
            written = conditional_write(partial(
                self.db.client.update_item, TableName=self.table, Key={"user_id": {"S": user_id}},
                UpdateExpression=update,
                ConditionExpression="version = :v", ExpressionAttributeNames=names,
                ExpressionAttributeValues=values), what)
            if not written:  # written in between: the next prune reads again
                return removed
            removed += len(chunk)
            version += 1
        return removed

    def _removable(self, outcomes: Mapping[str, Any], older_than_ms: int) -> tuple[list[str], int, int | None]:
        """Which recorded outcomes (wire form) may leave the item: decided before the cutoff and, with an archive,
        held by it. Returns them, the highest placing time among them, and the decision time of the oldest that
        stays (None: none with a time). Outcomes without a decision time stay."""
        records = {o: decode_outcome(from_dynamo(v)) for o, v in outcomes.items()}
        decided = {o: r.decided_at_ms for o, r in records.items() if r.decided_at_ms is not None}
        expired = [o for o, at in decided.items() if at < older_than_ms]
        if self.archive is not None and expired:
            held = self.archive.decided(expired)
            expired = [o for o in expired if o in held and held[o].status == records[o].status]
        # an order is placed before it is decided: a record without its placing time counts as placed at its
        # decision (true on one clock; only records written before placing times were kept lack it)
        upto = max((records[o].placed_at_ms or decided[o] for o in expired), default=0)
        gone = set(expired)
        return expired, upto, min((at for o, at in decided.items() if o not in gone), default=None)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _due(self, user_id: str, outcomes: Mapping[str, Any], n_outcomes: int) -> tuple[list[str], int]:
        """The outcomes that leave with the next write, and their mark (see _removable). A prune is due above the
        threshold, at most once per half horizon (1 s to 1 min) per user, and not before the oldest outcome the
        last prune kept can expire (each prune decodes every outcome and asks the archive)."""
        if self.horizon_ms is None or n_outcomes <= self.prune_above:
            return [], 0
        now = self._clock()
        if now < self._next_prune.get(user_id, 0.0):
            return [], 0
        if len(self._next_prune) > 100_000:
            self._next_prune.clear()
        gone, upto, oldest = self._removable(outcomes, self._now_ms() - self.horizon_ms)
        expires_s = (oldest + self.horizon_ms) / 1000 if oldest is not None else 0.0
        self._next_prune[user_id] = max(now + min(60.0, max(1.0, self.horizon_ms / 2000)), expires_s)
        return gone, upto

    @staticmethod
    def _refusal(current: Portfolio | None, user_id: str, order_id: str, cash_delta: Decimal, symbol: str,
                 qty_delta: int) -> DomainError | None:
        """Which part of the condition failed, judged on a fresh read; None if it would hold now."""
        if current is None:
            return PortfolioNotFound(user_id)
        if order_id in current.outcomes:
            return OutcomeAlreadyRecorded(order_id, current.outcomes[order_id])
        try:  # the domain's rule (the shares first), on the item as it is now
            Holdings(current.cash, {symbol: current.position(symbol)}).check(
                symbol, Change(cash_delta=cash_delta, qty_delta=qty_delta, fee=Decimal(0)))
        except (InsufficientShares, InsufficientFunds) as exc:
            return type(exc)(f"{user_id}: {exc}")
        return None
