"""Every event on Kafka, defined once: versioned JSON schemas shared by all producers and consumers.

Money travels as decimal strings (never floats), times as epoch milliseconds UTC (`*_ms`), quantities as ints.
Each event carries `type` and `schema_version`; a consumer refuses versions it does not know.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from tradesim.domain.errors import InvalidRecord

#: a symbol and an id (order, user): the one definition every entry point (API, CLI, scenario files) checks against
SYMBOL_RE = r"[A-Z][A-Z0-9.\-]{0,15}"
ID_RE = r"[A-Za-z0-9_.:\-]{1,64}"
#: a user id (an account's name): what the API takes in a path, and what the CLI checks before it builds one
USER_ID_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,39}$"
#: what a value refused by one of these patterns must look like, in words (a regular expression says little)
PATTERN_WORDS = {
    f"^{SYMBOL_RE}$": "must be a symbol like AAPL: an upper-case letter, then up to 15 of A-Z 0-9 . -",
    USER_ID_PATTERN: "must be a user id: a lower-case letter or digit, then up to 39 of a-z 0-9 _ . -",
    f"^{ID_RE}$": "must be an id: 1 to 64 of A-Z a-z 0-9 _ . : -",
}
SymbolStr = Annotated[str, Field(pattern=f"^{SYMBOL_RE}$")]
_SYMBOL = re.compile(SYMBOL_RE)


#: the most symbols one WebSocket (un)subscribe request may name (the market-data service refuses more)
MAX_SYMBOLS_PER_REQUEST = 500


def is_symbol(text: str) -> bool:
    """Whether `text` is a symbol as events spell it (upper case): the check of every entry point outside a schema."""
    return _SYMBOL.fullmatch(text) is not None


def is_path_id(text: str) -> bool:
    """Whether `text` is an id that can stand as a step of a URL path (`/orders/{id}`): the id pattern, and not
    dots alone, which a path reads as `.` or `..`."""
    return re.fullmatch(ID_RE, text) is not None and bool(text.strip("."))


def typed_symbol(text: str) -> str | None:
    """The symbol a user typed, in upper case, or None if it is not one. Only ASCII is upper-cased: Unicode's
    rules turn 'ß' into 'SS' and 'ſ' into 'S', so 'mſft' would trade MSFT."""
    upper = text.upper() if text.isascii() else text
    return upper if is_symbol(upper) else None


PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
#: the bounds of every price and print size that enters the system (ticks from scenario files, CSV replay,
#: ingestion; order prices): part of the schema, so every producer and consumer agrees, and a price times any
#: quantity stays exact in Decimal's default 28-digit context
MAX_PRICE = Decimal("1000000")
#: starting cash has at most this many integer digits (and cents): what an account takes
CASH_DIGITS = 15
PRICE_PLACES = 4
MAX_PRINT_SIZE = 1_000_000_000
#: the most shares one order may ask for (API, scenario files, strategies, the event)
MAX_QTY = 1_000_000_000
MarketPrice = Annotated[Decimal, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False, decimal_places=PRICE_PLACES)]
#: the last millisecond of year 9999: every epoch-ms time is at most this, so every consumer can make a date of it
MAX_EPOCH_MS = 253_402_300_799_999
#: the read API takes a time given in digits only from here (or 0): a smaller one is likely epoch seconds or a
#: compact date (`20250131`), which read as milliseconds would fall in January 1970 (1970-04-26T17:46:40Z)
MIN_QUERY_EPOCH_MS = 10**10
#: an ISO-8601 date or date-time as the read API (`from`, `to`) and the CLI (`--since`) take it, the offset optional
#: (then UTC). A fraction only after the seconds: Python reads `T09.5` (ISO: 09:30) as 09:00:00.5
ISO_TIME_RE = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}(:?[0-9]{2}(:?[0-9]{2}([.,][0-9]{1,9})?)?)?)?"
               r"(Z|[+-][0-9]{2}:?[0-9]{2})?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(when: datetime) -> int:
    """An aware time as epoch milliseconds, by integer arithmetic (a float timestamp can be 1 ms off)."""
    return (when - _EPOCH) // _MS

#: the largest sequence number or run id: a signed 64-bit integer, what the JVM bars job and the stores hold (the
#: Redis price cache's Lua compares them as doubles, exact to 2^53, which no feed of ours nears)
MAX_SEQ = 2**63 - 1
#: a W3C trace context (version 00): the span that produced an event, so a consumer continues the order's trace.
#: In the event as well as in the record's headers, since PyFlink's Kafka source does not expose headers.
TRACEPARENT_RE = r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"


def _trace_or_none(value: Any) -> str | None:
    """A traceparent this release cannot read (another version, upper case) is dropped, never the event: a
    trace is an aid, the order is not."""
    return value if isinstance(value, str) and re.fullmatch(TRACEPARENT_RE, value) else None


TraceParent = Annotated[str | None, BeforeValidator(_trace_or_none),
                        Field(None, description="W3C traceparent of the span that produced this event")]


def _reject_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("must be a decimal string, not a float")
    return value


class Event(BaseModel):
    """Base of all events: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1

    def __setstate__(self, state: dict[Any, Any]) -> None:
        """An event pickled by an older release (the execution job's state, a savepoint) lacks the fields added
        since: they get their defaults, so reading one never raises."""
        values = state.setdefault("__dict__", {})
        fields = type(self).model_fields
        if not values.keys() >= fields.keys():  # the job unpickles every record it passes on: skip when complete
            for name, info in fields.items():
                if name not in values and not info.is_required():
                    values[name] = info.get_default(call_default_factory=True, validated_data=values)
        super().__setstate__(state)


class Tick(Event):
    """A quote/trade print for one symbol; on `market_data`, keyed by symbol."""

    type: Literal["tick"] = "tick"
    symbol: SymbolStr
    bid: MarketPrice
    ask: MarketPrice
    last: MarketPrice
    size: int = Field(ge=0, le=MAX_PRINT_SIZE)
    event_time_ms: int = Field(ge=0, le=MAX_EPOCH_MS, description="simulated event time, epoch ms UTC")
    seq: int = Field(ge=1, le=MAX_SEQ, description="per-symbol sequence number within a scenario run")
    scenario_id: str = Field(min_length=1, max_length=128)
    run_id: int = Field(
        0, ge=0, le=MAX_SEQ,
        description="epoch ms at which the replay run started; a newer run supersedes an older one, so the price "
        "cache orders quotes by (run_id, seq)"
    )

    _floats = field_validator("bid", "ask", "last", mode="before")(_reject_float)

    @model_validator(mode="after")
    def _spread(self) -> Tick:
        # the cap is the one price no bid reaches: a sell limit there rests until cancelled (the scenario runner's
        # own probe and barrier orders are such sells)
        if self.bid >= MAX_PRICE:
            raise ValueError(f"bid {self.bid} is not below the price cap {MAX_PRICE}")
        if self.bid > self.ask:
            raise ValueError(f"bid {self.bid} is above ask {self.ask}")
        return self

    @property
    def key(self) -> bytes:
        return self.symbol.encode()


BarInterval = Literal["1s", "1m"]
#: the bar intervals the `bars` job emits
BAR_INTERVALS: tuple[str, ...] = get_args(BarInterval)


class Bar(Event):
    """An OHLCV bar of one symbol over one event-time window [start, end); on `market_bars`, keyed by symbol.

    A pure function of the ticks in its window (open/close by (event_time_ms, run_id, seq)), so a replayed window
    yields an identical bar.
    """

    type: Literal["bar"] = "bar"
    symbol: SymbolStr
    interval: BarInterval
    window_start_ms: int = Field(ge=0, le=MAX_EPOCH_MS, description="window start, epoch ms UTC, inclusive")
    window_end_ms: int = Field(ge=0, le=MAX_EPOCH_MS, description="window end, epoch ms UTC, exclusive")
    open: PositiveDecimal
    high: PositiveDecimal
    low: PositiveDecimal
    close: PositiveDecimal
    vwap: PositiveDecimal = Field(description="sum(last*size)/sum(size); the close when the volume is 0")
    volume: int = Field(ge=0)
    trade_count: int = Field(ge=1, description="ticks in the window")

    _floats = field_validator("open", "high", "low", "close", "vwap", mode="before")(_reject_float)

    @model_validator(mode="after")
    def _consistent(self) -> Bar:
        if self.window_end_ms <= self.window_start_ms:
            raise ValueError("window_end_ms must be after window_start_ms")
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            raise ValueError("open/close must lie within low..high")
        return self

    @property
    def key(self) -> bytes:
        return self.symbol.encode()


#: a dead letter's record at most: ≤ 6 bytes each as JSON (a control character's escape), so ≤ 384 KiB, under Kafka's
#: 1 MB record limit with room for the rest of the letter
MAX_RECORD_CHARS = 64 * 1024
#: a dead letter's reason at most (it may quote the record, e.g. a validation error naming an unknown field)
MAX_REASON_CHARS = 4 * 1024


class DeadLetter(Event):
    """A record a consumer could not process, with the reason; on `dead_letter`."""

    type: Literal["dead_letter"] = "dead_letter"
    source_topic: str
    consumer: str = Field(description="who refused it, e.g. the Flink job name")
    reason: str
    record: str = Field(description="the refused record, decoded as UTF-8 with replacement characters")

    @classmethod
    def of(cls, raw: bytes | str, *, source_topic: str, consumer: str, reason: str) -> DeadLetter:
        """The letter of a raw record (bytes that are not UTF-8 keep a replacement character). A record longer than
        MAX_RECORD_CHARS is cut there, and a reason longer than MAX_REASON_CHARS, each saying so: the letter must fit
        a Kafka record whatever its source was, or one record could hold its consumer forever."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if len(reason) > MAX_REASON_CHARS:
            reason = f"{reason[:MAX_REASON_CHARS]}… (reason cut)"
        if len(text) > MAX_RECORD_CHARS:
            reason = f"{reason} (record cut to its first {MAX_RECORD_CHARS} of {len(text)} characters)"
            text = text[:MAX_RECORD_CHARS]
        return cls(source_topic=source_topic, consumer=consumer, reason=reason, record=text)


Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
TimeInForce = Literal["day", "gtc", "ioc"]
IdStr = Annotated[str, Field(min_length=1, max_length=64, pattern=f"^{ID_RE}$")]


class OrderPlaced(Event):
    """An order the API accepted (answered 202); on `trade_orders`, keyed by user_id."""

    type: Literal["order_placed"] = "order_placed"
    order_id: IdStr
    user_id: IdStr
    symbol: SymbolStr
    side: Side
    qty: int = Field(gt=0, le=MAX_QTY)
    order_type: OrderType
    limit_price: MarketPrice | None = None
    stop_price: MarketPrice | None = None
    time_in_force: TimeInForce = "day"
    client_order_id: str | None = Field(None, max_length=64)
    placed_at_ms: int = Field(ge=0, le=MAX_EPOCH_MS)
    at_ms: int | None = Field(
        None, ge=0, le=MAX_EPOCH_MS,
        description="a scripted order's time on the market's clock (tick event time): the book holds it "
        "until the tick stream passes that time and matches it on the tick in effect then; absent: on arrival")
    cancel_at_ms: int | None = Field(
        None, ge=0, le=MAX_EPOCH_MS,
        description="a scripted cancel: the order is cancelled when the tick stream passes this time "
        "on the market's clock (before that tick is matched), if it is still open")
    session_ms: int | None = Field(
        None, ge=0, le=MAX_EPOCH_MS,
        description="set by the book, not by producers: the market time (quote event time) at which "
        "a live order reached it; a DAY order lasts until the end of that market day")
    held_cancel_ms: int | None = Field(
        None, ge=0, le=MAX_EPOCH_MS, exclude=True,
        description="set by the book, not by producers, and never encoded (the job's state keeps it): the market "
        "time of a timed cancel request it holds for this order, earlier than its own cancel_at_ms (which stays "
        "as placed: it is part of the order's body)")
    traceparent: TraceParent = None

    _floats = field_validator("limit_price", "stop_price", mode="before")(_reject_float)

    @model_validator(mode="after")
    def _prices_match_type(self) -> OrderPlaced:
        needs_limit = self.order_type in ("limit", "stop_limit")
        needs_stop = self.order_type in ("stop", "stop_limit")
        if needs_limit != (self.limit_price is not None):
            raise ValueError(f"limit_price is {'required' if needs_limit else 'not allowed'} for a "
                             f"{self.order_type} order")
        if needs_stop != (self.stop_price is not None):
            raise ValueError(f"stop_price is {'required' if needs_stop else 'not allowed'} for a "
                             f"{self.order_type} order")
        if self.at_ms is not None and self.cancel_at_ms is not None and self.cancel_at_ms <= self.at_ms:
            raise ValueError("cancel_at_ms must be after at_ms")
        return self

    @property
    def cancel_due_ms(self) -> int | None:
        """The market time the book cancels this order at if it is still open: the earlier of its own
        `cancel_at_ms` and a held cancel request's."""
        times = [t for t in (self.cancel_at_ms, self.held_cancel_ms) if t is not None]
        return min(times) if times else None

    @property
    def key(self) -> bytes:
        return self.user_id.encode()


class OrderCancelRequested(Event):
    """A user asked to cancel a resting order; on `trade_orders`, keyed by user_id."""

    type: Literal["order_cancel_requested"] = "order_cancel_requested"
    order_id: IdStr
    user_id: IdStr
    symbol: SymbolStr | None = Field(
        None, description="the order's symbol: the execution job routes the cancel to the book holding the order; "
        "the API fills it from the Orders table (a cancel without it can only cancel nothing)"
    )
    requested_at_ms: int = Field(ge=0, le=MAX_EPOCH_MS)
    at_ms: int | None = Field(
        None, ge=0, le=MAX_EPOCH_MS,
        description="market time (tick event time, epoch ms) the cancel takes effect at: the book holds "
        "it as the order's cancel_at_ms until the tick stream passes it; absent: at once"
    )
    lost_order: OrderPlaced | None = Field(
        None, description="the order as placed, when its sender believes the book lost it (the execution job "
        "started without the state that held it): a book that holds the order ignores this cancel, one that does "
        "not cancels the order from this; absent from the record when not set"
    )

    @model_validator(mode="after")
    def _lost_order_matches(self) -> OrderCancelRequested:
        lost = self.lost_order
        if lost is not None and (lost.order_id, lost.user_id, lost.symbol) != (self.order_id, self.user_id,
                                                                               self.symbol):
            raise ValueError("lost_order: must be the cancelled order (its order_id, user_id and symbol)")
        if lost is not None and self.at_ms is not None:
            raise ValueError("lost_order: a cancel of a lost order takes effect at once (no at_ms)")
        return self

    @model_serializer(mode="wrap")
    def _without_lost_order_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A plain cancel is written as before the field existed, so a job of the release before reads it."""
        data: dict[str, Any] = handler(self)
        if data.get("lost_order") is None:
            data.pop("lost_order", None)
        return data

    @property
    def key(self) -> bytes:
        return self.user_id.encode()


OrderStatus = Literal["executed", "rejected", "cancelled", "expired"]
RejectReason = Literal["insufficient_funds", "insufficient_shares", "unknown_symbol", "expired", "invalid",
                       "too_many_recent_orders", "not_processed_in_time", "internal_error"]


class OrderOutcome(Event):
    """The one terminal outcome of an order; on `trade_executed`, keyed by user_id.

    Exactly one per order_id: decided once by a conditional write on the user's portfolio and re-emitted
    unchanged on replay (but for `traceparent`, which names the span that emitted this copy).
    """

    type: Literal["order_outcome"] = "order_outcome"
    order_id: IdStr
    user_id: IdStr
    symbol: SymbolStr
    side: Side
    qty: int = Field(gt=0)
    status: OrderStatus
    reason: RejectReason | None = None
    fill_price: PositiveDecimal | None = None
    fee: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] | None = None
    cash_after: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] | None = None
    position_after: int | None = Field(None, ge=0)
    trade_id: IdStr | None = Field(None, description="deterministic: derived from order_id")
    decided_at_ms: int = Field(ge=0, le=MAX_EPOCH_MS)
    order_type: OrderType | None = Field(None, description="the order's type; absent in outcomes before 0.14")
    placed_at_ms: int | None = Field(None, ge=0, le=MAX_EPOCH_MS,
                                     description="the order's placing time; absent before 0.14")
    traceparent: TraceParent = None

    _floats = field_validator("fill_price", "fee", "cash_after", mode="before")(_reject_float)

    @model_validator(mode="after")
    def _fields_match_status(self) -> OrderOutcome:
        filled = self.status == "executed"
        if filled != (self.fill_price is not None and self.fee is not None and self.trade_id is not None):
            raise ValueError("fill_price, fee and trade_id are required for, and only for, executed outcomes")
        if self.status == "rejected" and self.reason is None:
            raise ValueError("a rejected outcome needs a reason")
        return self

    @property
    def key(self) -> bytes:
        return self.user_id.encode()


TradeOrderEvent = Annotated[OrderPlaced | OrderCancelRequested, Field(discriminator="type")]
_TRADE_ORDER_EVENT: TypeAdapter[OrderPlaced | OrderCancelRequested] = TypeAdapter(TradeOrderEvent)


def decode_trade_order(raw: bytes | str) -> OrderPlaced | OrderCancelRequested:
    """Decode a record of `trade_orders` (either event type); raises InvalidRecord naming the field."""
    try:
        return _TRADE_ORDER_EVENT.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "$"
        raise InvalidRecord(field, first["msg"]) from None


E = TypeVar("E", bound=Event)


def encode(event: Event) -> bytes:
    """Compact JSON bytes; Decimal fields become strings."""
    return event.model_dump_json().encode()


def decode(model: type[E], raw: bytes | str) -> E:
    """Parse and validate; raises InvalidRecord naming the first offending field."""
    try:
        return model.model_validate_json(raw)  # fast path: one pass in pydantic-core
    except ValidationError:
        pass  # re-parse below to name the field in our own words
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRecord("$", f"not JSON: {exc}") from None
    except RecursionError:  # nested deeper than the interpreter's stack: refused, never the consumer's crash
        raise InvalidRecord("$", "not JSON: nested too deep") from None
    if not isinstance(data, dict):
        raise InvalidRecord("$", "not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "$"
        raise InvalidRecord(field, first["msg"]) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON schema of every event type, by type name."""
    return {"tick": Tick.model_json_schema(), "bar": Bar.model_json_schema(),
            "dead_letter": DeadLetter.model_json_schema(), "order_placed": OrderPlaced.model_json_schema(),
            "order_cancel_requested": OrderCancelRequested.model_json_schema(),
            "order_outcome": OrderOutcome.model_json_schema()}
