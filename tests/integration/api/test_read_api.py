"""The read side of the API on the real servers: /portfolio, /trades/search, /analytics/volume and /analytics/pnl.

The read models are filled directly through their adapters' `write()` (OpenSearch and ClickHouse), the ledger
through `PortfolioStore.apply_fill` as the execution job would; each test has its own users and symbols. The API
under test runs in this process (uvicorn, the same app) on its own search alias and ClickHouse database: rows
written here are not in `trade_executed`, so a `tradesim rebuild` of the live read models (another session's
test, say) would drop them, and its alias or table swap would interrupt a paging test.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import uvicorn

from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.adapters.search.trades import TradeIndex
from tradesim.domain.pnl import cash_delta, positions
from tradesim.domain.trades import TradeRecord
from tradesim.services.api.app import create_app
from tradesim.settings import Settings
from tradesim.testing.factories import unique_symbol
from tradesim.testing.net import free_port

from .conftest import User, wait_for

pytestmark = pytest.mark.integration
D = Decimal
#: a past day the tests put their trades in (2024-03-05 UTC): a whole day, far from now
DAY = int(datetime(2024, 3, 5, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
_ids = itertools.count()


@pytest.fixture(scope="module")
def isolated(settings: Settings) -> Settings:
    """The settings with this module's own search alias and ClickHouse database."""
    tag = secrets.token_hex(4)
    return settings.model_copy(update={
        "opensearch": settings.opensearch.model_copy(update={"trades_index": f"tst-readapi-{tag}"}),
        "clickhouse": settings.clickhouse.model_copy(update={"database": f"tst_readapi_{tag}"}),
    })


@pytest.fixture(scope="module")
def index(isolated: Settings) -> Iterator[TradeIndex]:
    live = TradeIndex.from_settings(isolated.opensearch)
    live.ensure()
    yield live
    live.drop()
    live.close()


@pytest.fixture(scope="module")
def store(isolated: Settings) -> Iterator[TradeStore]:
    live = TradeStore.from_settings(isolated.clickhouse)
    live.create_schema()
    yield live
    live.drop()
    live.client.get().command(f"DROP DATABASE IF EXISTS {live.client.database}")
    live.close()


@pytest.fixture(scope="module")
def api(isolated: Settings, index: TradeIndex, store: TradeStore) -> Iterator[httpx.Client]:
    """The API app on a free port, reading the module's read models (and the stack's DynamoDB and Redis)."""
    port = free_port()
    custom = isolated.model_copy(update={"api": isolated.api.model_copy(update={"port": port})})
    server = uvicorn.Server(uvicorn.Config(create_app(custom), host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on", loop="asyncio"))
    thread = threading.Thread(target=server.run, name=f"read-api-{port}", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 15, "the read API to start")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    server.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def ledger(settings: Settings) -> Iterator[PortfolioStore]:
    db = DynamoDB(settings.dynamodb)
    yield PortfolioStore(db)
    db.close()


@pytest.fixture
def admin(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


def rec(user: User | str, symbol: str, side: str, qty: int, price: str | None, at: int, *, fee: str = "1.00",
        status: str = "executed", reason: str | None = None) -> TradeRecord:
    executed = status == "executed"
    return TradeRecord(order_id=f"o_read_{time.time_ns():x}_{next(_ids)}",
                       user_id=user if isinstance(user, str) else user.user_id, symbol=symbol,
                       side=side, qty=qty, status=status, decided_at_ms=at,  # type: ignore[arg-type]
                       order_type="market", placed_at_ms=at - 5, reason=reason,
                       price=D(price) if executed and price else None, fee=D(fee) if executed else None)


def write(index: TradeIndex, store: TradeStore, records: list[TradeRecord]) -> None:
    """Into both read models, visible to the next search."""
    index.write(records, refresh=True)
    store.write(records)


def settle(ledger: PortfolioStore, records: list[TradeRecord]) -> None:
    """Apply executions to the ledger as the execution job would (same cash change as the read models show)."""
    for r in records:
        if r.executed:
            ledger.apply_fill(r.user_id, r.order_id, cash_delta(r), r.symbol, r.qty if r.side == "buy" else -r.qty,
                              placed_at_ms=r.placed_at_ms)


def search_all(api: httpx.Client, headers: dict[str, str], **params: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    cursor = None
    while True:
        answer = api.get("/trades/search", params={**params, **({"cursor": cursor} if cursor else {})},
                          headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found += page["trades"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


# ---- access control -------------------------------------------------------------------------------------------

def test_a_user_sees_only_their_own_trades(api: httpx.Client, new_user: Callable[..., User], index: TradeIndex,
                                           store: TradeStore, admin: dict[str, str]) -> None:
    a, b = new_user(), new_user()
    sym = unique_symbol()
    write(index, store, [rec(a, sym, "buy", 5, "10.00", DAY + 1), rec(a, sym, "sell", 2, "11.00", DAY + 2),
                         rec(b, sym, "buy", 7, "10.50", DAY + 3)])
    assert {t["user_id"] for t in search_all(api, a.auth)} == {a.user_id}
    assert [t["qty"] for t in search_all(api, a.auth)] == [2, 5]
    assert [t["qty"] for t in search_all(api, b.auth)] == [7]
    # the admin key: everyone's, or one user's
    assert sorted(t["qty"] for t in search_all(api, admin, symbol=sym)) == [2, 5, 7]
    assert [t["qty"] for t in search_all(api, admin, user=b.user_id)] == [7]


@pytest.mark.parametrize("path", ["/portfolio", "/trades/search", "/analytics/volume", "/analytics/pnl"])
def test_a_user_key_cannot_name_another_user(api: httpx.Client, new_user: Callable[..., User],
                                             admin: dict[str, str], path: str) -> None:
    a, b = new_user(), new_user()
    other = api.get(path, params={"user": b.user_id}, headers=a.auth)
    assert other.status_code == 403, other.text
    assert other.json()["code"] == "forbidden"
    assert api.get(path, params={"user": a.user_id}, headers=a.auth).status_code == 200  # itself: fine
    assert api.get(path).status_code == 401
    unknown = api.get(path, params={"user": "nosuch-user-x"}, headers=admin)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "account_not_found")


@pytest.mark.parametrize("path", ["/portfolio", "/trades/search", "/analytics/volume", "/analytics/pnl", "/orders"])
def test_a_misspelt_or_repeated_query_parameter_is_refused(api: httpx.Client, new_user: Callable[..., User],
                                                           path: str) -> None:
    """A review: both were answered 200, the misspelt one dropped (`?symbl=X` searched every symbol) and the
    repeated one overridden by its last value."""
    a = new_user()
    misspelt = api.get(path, params={"usr": a.user_id}, headers=a.auth)
    assert (misspelt.status_code, misspelt.json()["code"]) == (422, "invalid_request"), misspelt.text
    assert misspelt.json()["message"].startswith("query.usr: not a parameter of this route (it takes: ")
    assert "user" in misspelt.json()["message"]
    assert api.get(path, params={"usr": a.user_id}).status_code == 401  # no key: that first, whatever the query
    twice = api.get(path, params=[("user", a.user_id), ("user", a.user_id)], headers=a.auth)
    assert (twice.status_code, twice.json()["message"]) == (422, "query.user: given more than once; give it once")
    assert twice.json()["errors"] == [{"loc": ["query", "user"], "msg": "given more than once; give it once",
                                       "type": "extra_forbidden"}]


def test_a_user_key_cannot_list_another_users_orders(api: httpx.Client, new_user: Callable[..., User]) -> None:
    """Before: `?user=` was ignored and the caller's own orders came back, as if they were the other user's."""
    a, b = new_user(), new_user()
    other = api.get("/orders", params={"user": b.user_id}, headers=a.auth)
    assert (other.status_code, other.json()["code"]) == (403, "forbidden"), other.text
    assert api.get("/orders", params={"user": a.user_id}, headers=a.auth).status_code == 200


@pytest.mark.parametrize("path", ["/portfolio", "/analytics/pnl"])
def test_per_user_reads_with_the_admin_key_must_name_the_user(api: httpx.Client, admin: dict[str, str],
                                                              path: str) -> None:
    answer = api.get(path, headers=admin)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["query", "user"]


def test_analytics_and_portfolio_show_only_the_callers_data(
        api: httpx.Client, new_user: Callable[..., User], index: TradeIndex, store: TradeStore,
        ledger: PortfolioStore, admin: dict[str, str], symbol: str) -> None:
    a, b = new_user(), new_user()
    records = [rec(a, symbol, "buy", 10, "100.00", DAY + HOUR), rec(b, symbol, "buy", 3, "99.00", DAY + HOUR + 1)]
    write(index, store, records)
    settle(ledger, records)
    window = {"from": DAY, "to": DAY + 86_400_000, "interval": "1d", "symbol": symbol}
    mine = api.get("/analytics/volume", params=window, headers=a.auth).json()
    assert mine["user_id"] == a.user_id
    assert [(r["shares"], r["trades"]) for r in mine["buckets"]] == [(10, 1)]
    market = api.get("/analytics/volume", params=window, headers=admin).json()
    assert market["user_id"] is None
    assert [(r["shares"], r["trades"]) for r in market["buckets"]] == [(13, 2)]
    portfolio_a = api.get("/portfolio", headers=a.auth).json()
    assert [(p["symbol"], p["qty"]) for p in portfolio_a["positions"]] == [(symbol, 10)]
    portfolio_b = api.get("/portfolio", params={"user": b.user_id}, headers=admin).json()
    assert [(p["symbol"], p["qty"], D(p["average_cost"])) for p in portfolio_b["positions"]] == [
        (symbol, 3, positions(records[1:])[symbol].average_cost)]
    window = {"from": DAY, "to": DAY + 2 * HOUR, "interval": "1h"}
    pnl_a = api.get("/analytics/pnl", params=window, headers=a.auth).json()
    pnl_b = api.get("/analytics/pnl", params={**window, "user": b.user_id}, headers=admin).json()
    assert (pnl_a["user_id"], pnl_b["user_id"]) == (a.user_id, b.user_id)
    # each counts only its own fills: a's 10 and b's 3 shares, at the symbol's last fill (b's, 99.00)
    assert [D(p["equity"]) for p in pnl_a["points"]] == [D("100000"), D(pnl_a["cash"]) + 10 * D("99.00")]
    assert [D(p["equity"]) for p in pnl_b["points"]] == [D("100000"), D(pnl_b["cash"]) + 3 * D("99.00")]


# ---- /trades/search --------------------------------------------------------------------------------------------

def test_cursor_pages_cover_every_trade_once_newest_first(api: httpx.Client, user: User, index: TradeIndex,
                                                          store: TradeStore) -> None:
    sym = unique_symbol()
    # 23 outcomes, two of them at the same decision time (the order id breaks the tie)
    records = [rec(user, sym, "buy", i + 1, "10.00", DAY + 1000 * i) for i in range(22)]
    records.append(rec(user, sym, "sell", 99, None, DAY + 1000 * 21, status="rejected", reason="insufficient_shares"))
    write(index, store, records)
    pages = []
    cursor = None
    while True:
        answer = api.get("/trades/search", params={"size": 5, **({"cursor": cursor} if cursor else {})},
                          headers=user.auth)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["total"] == 23
        pages.append(page["trades"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    seen = [t["order_id"] for p in pages for t in p]
    assert sorted(seen) == sorted(r.order_id for r in records)
    times = [t["decided_at_ms"] for p in pages for t in p]
    assert times == sorted(times, reverse=True)
    rejected = next(t for p in pages for t in p if t["status"] == "rejected")
    assert (rejected["price"], rejected["fee"], rejected["notional"], rejected["reason"]) == (
        None, None, None, "insufficient_shares")
    executed = next(t for p in pages for t in p if t["qty"] == 3)
    assert (executed["price"], executed["fee"], executed["notional"]) == ("10.00", "1.00", "30.00")


def test_pages_neither_repeat_nor_skip_while_trades_arrive(api: httpx.Client, user: User, index: TradeIndex,
                                                           store: TradeStore) -> None:
    sym = unique_symbol()
    first = [rec(user, sym, "buy", 1, "10.00", DAY + 10_000 + i) for i in range(12)]
    write(index, store, first)
    page = api.get("/trades/search", params={"size": 5}, headers=user.auth).json()
    seen = [t["order_id"] for t in page["trades"]]
    cursor = page["next_cursor"]
    # newer trades arrive (they sort before the cursor) and one older one (after it: the pages reach it)
    late_old = rec(user, sym, "buy", 1, "10.00", DAY + 1)
    write(index, store, [rec(user, sym, "sell", 1, "10.00", DAY + 20_000 + i) for i in range(4)] + [late_old])
    while cursor is not None:
        page = api.get("/trades/search", params={"size": 5, "cursor": cursor}, headers=user.auth).json()
        seen += [t["order_id"] for t in page["trades"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))
    assert set(seen) == {r.order_id for r in first} | {late_old.order_id}


def test_search_filters(api: httpx.Client, user: User, index: TradeIndex, store: TradeStore) -> None:
    s1, s2 = unique_symbol(), unique_symbol()
    write(index, store, [
        rec(user, s1, "buy", 1, "10.00", DAY + 1_000), rec(user, s1, "sell", 2, "10.00", DAY + 2_000),
        rec(user, s2, "buy", 3, None, DAY + 3_000, status="cancelled"),
        rec(user, s2, "buy", 4, None, DAY + 4_000, status="rejected", reason="insufficient_funds"),
    ])

    def qtys(**params: object) -> list[int]:
        return [int(str(t["qty"])) for t in search_all(api, user.auth, **params)]

    assert qtys(symbol=s1) == [2, 1]
    assert qtys(side="sell") == [2]
    assert qtys(status="cancelled") == [3]
    assert qtys(**{"from": DAY + 2_000, "to": DAY + 4_000}) == [3, 2]  # [from, to)
    iso = datetime.fromtimestamp((DAY + 3_000) / 1000, UTC).isoformat().replace("+00:00", "Z")
    assert qtys(**{"from": iso}) == [4, 3]
    assert qtys(q="insufficient_funds") == [4]
    # before: 200 and every trade (the search strips the text and drops it if empty), or none (`_`: no word)
    for blank in ("  ", "\x1c", "_", "--"):
        answer = api.get("/trades/search", params={"q": blank}, headers=user.auth)
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request"), answer.text
        assert answer.json()["message"].startswith("query.q: must hold a word to find")
    assert qtys(sort="decided_asc") == [1, 2, 3, 4]
    assert qtys(sort="qty_desc") == [4, 3, 2, 1]


def test_a_cursor_from_another_query_or_made_up_is_400(api: httpx.Client, user: User, index: TradeIndex,
                                                       store: TradeStore) -> None:
    sym = unique_symbol()
    write(index, store, [rec(user, sym, "buy", 1, "10.00", DAY + i) for i in range(3)])
    cursor = api.get("/trades/search", params={"size": 1}, headers=user.auth).json()["next_cursor"]
    assert cursor
    for params in ({"cursor": "bm90IGEgY3Vyc29y"}, {"cursor": cursor, "side": "sell"},
                   {"cursor": cursor, "sort": "qty_desc"}):
        answer = api.get("/trades/search", params=params, headers=user.auth)
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize(("path", "params", "where"), [
    ("/trades/search", {"size": 0}, "size"),
    ("/trades/search", {"size": 501}, "size"),
    ("/trades/search", {"sort": "price"}, "sort"),
    ("/trades/search", {"side": "short"}, "side"),
    ("/trades/search", {"status": "accepted"}, "status"),
    ("/trades/search", {"symbol": "acme"}, "symbol"),
    ("/trades/search", {"from": "yesterday"}, "from"),
    ("/trades/search", {"from": "2024-02-30"}, "from"),
    ("/trades/search", {"from": "2024-03-02", "to": "2024-03-01"}, "from"),
    ("/analytics/volume", {"interval": "2m"}, "interval"),
    ("/analytics/volume", {"from": "0", "interval": "1m"}, "interval"),  # > 10,000 buckets
    ("/analytics/volume", {"from": "2024-03-02T00:00:00Z", "to": "1709251200000"}, "from"),
    ("/analytics/pnl", {"from": "99999999999999999"}, "from"),
    ("/trades/search", {"from": "1738315800"}, "from"),  # epoch seconds: was read as ms, 1970-01-21
    ("/analytics/volume", {"to": "20250131"}, "to"),  # a compact date: was read as ms, 1970-01-01T05:37
    ("/analytics/volume", {"from": "2999-01-01"}, "from"),  # after `to`, which is now: was 200 with `to` moved
    ("/analytics/pnl", {"from": "2999-01-01"}, "from"),
    ("/analytics/pnl", {"to": "2024-01-01T00:00:00+01:00", "interval": "1d", "from": "2023-12-31"}, None),
    ("/portfolio", {"user": "Not A User"}, "user"),
])
def test_bad_parameters_are_422_with_field_errors(api: httpx.Client, user: User, path: str,
                                                  params: dict[str, object], where: str | None) -> None:
    answer = api.get(path, params=params, headers=user.auth)
    if where is None:  # a valid one among them, for contrast
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "invalid_request"
    assert body["errors"][0]["loc"] == ["query", where]


def test_a_time_that_is_no_time_is_named_in_words_not_as_a_pattern(api: httpx.Client, user: User) -> None:
    # `+01:00` typed into a URL arrives as a space: the answer says what a time is and how to send the offset
    for path in ("/trades/search", "/analytics/pnl"):
        answer = api.get(path, params={"from": "2025-01-31T09:30:00 01:00"}, headers=user.auth)
        assert answer.status_code == 422, answer.text
        message = answer.json()["message"]
        assert "not an ISO-8601 time" in message
        assert "%2B" in message
        assert "pattern" not in message  # was "String should match pattern '^([0-9]{1,15}|...'"


def test_ten_thousand_buckets_are_fine(api: httpx.Client, user: User) -> None:
    start = DAY
    ok = api.get("/analytics/volume", params={"from": start, "to": start + 10_000 * 60_000, "interval": "1m"},
                  headers=user.auth)
    assert ok.status_code == 200, ok.text
    over = api.get("/analytics/volume", params={"from": start, "to": start + 10_000 * 60_000 + 1, "interval": "1m"},
                    headers=user.auth)
    assert over.status_code == 422


# ---- /analytics ------------------------------------------------------------------------------------------------

def test_volume_per_symbol_and_bucket(api: httpx.Client, user: User, index: TradeIndex, store: TradeStore) -> None:
    s1, s2 = sorted([unique_symbol(), unique_symbol()])
    records = [
        rec(user, s1, "buy", 10, "100.00", DAY + 5 * 60_000),
        rec(user, s1, "sell", 30, "101.00", DAY + 7 * 60_000),
        rec(user, s1, "buy", 5, "99.50", DAY + HOUR + 1),
        rec(user, s2, "buy", 1, "3.3333", DAY + 2 * 60_000),
        rec(user, s1, "buy", 500, None, DAY + 6 * 60_000, status="rejected", reason="insufficient_funds"),
        rec(user, s1, "buy", 1, "1.00", DAY - 1),  # before the window
    ]
    write(index, store, records)
    answer = api.get("/analytics/volume", params={"from": DAY, "to": DAY + 2 * HOUR, "interval": "1h"},
                      headers=user.auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["from_ms"], body["to_ms"], body["interval"]) == (DAY, DAY + 2 * HOUR, "1h")
    rows = [(r["symbol"], r["start_ms"], r["shares"], D(r["notional"]), r["trades"], D(r["vwap"]))
            for r in body["buckets"]]
    assert rows == [
        (s1, DAY, 40, D("4030.00"), 2, D("100.75")),
        (s1, DAY + HOUR, 5, D("497.50"), 1, D("99.5")),
        (s2, DAY, 1, D("3.3333"), 1, D("3.3333")),
    ]
    only = api.get("/analytics/volume", params={"from": DAY, "to": DAY + 2 * HOUR, "interval": "5m", "symbol": s1},
                    headers=user.auth).json()
    assert [(r["start_ms"] - DAY, r["shares"]) for r in only["buckets"]] == [(5 * 60_000, 40), (HOUR, 5)]
    assert all(isinstance(r["notional"], str) and isinstance(r["vwap"], str) for r in only["buckets"])


def test_volume_defaults_to_the_last_24_hours(api: httpx.Client, user: User) -> None:
    before = int(time.time() * 1000)
    body = api.get("/analytics/volume", headers=user.auth).json()
    assert body["interval"] == "1h"
    assert body["to_ms"] - body["from_ms"] == 86_400_000
    assert before <= body["to_ms"] <= int(time.time() * 1000)


def test_pnl_series_realized_and_equity_per_bucket(api: httpx.Client, new_user: Callable[..., User],
                                                   index: TradeIndex, store: TradeStore,
                                                   ledger: PortfolioStore) -> None:
    u = new_user(cash="10000")
    sym = unique_symbol()
    records = [rec(u, sym, "buy", 10, "100.00", DAY + 30 * 60_000),           # cost 1001.00
               rec(u, sym, "sell", 4, "110.00", DAY + HOUR + 10 * 60_000)]   # realizes 440 − 1 − 400.40
    write(index, store, records)
    settle(ledger, records)
    answer = api.get("/analytics/pnl", params={"from": DAY, "to": DAY + 3 * HOUR, "interval": "1h"}, headers=u.auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cash"] == "9438.00"
    points = [(p["end_ms"] - DAY, D(p["realized_pnl"]), None if p["equity"] is None else D(p["equity"]))
              for p in body["points"]]
    assert points == [
        (HOUR, D(0), D("8999.00") + 10 * D("100.00")),        # marked at its own fill, the last of the symbol
        (2 * HOUR, D("38.60"), D("9438.00") + 6 * D("110.00")),
        (3 * HOUR, D("38.60"), D("9438.00") + 6 * D("110.00")),
    ]


def test_a_reset_starts_the_pnl_and_the_cost_basis_over(api: httpx.Client, new_user: Callable[..., User],
                                                        index: TradeIndex, store: TradeStore, ledger: PortfolioStore,
                                                        admin: dict[str, str]) -> None:
    """Before: the executions before a reset still made the cost basis and realized P&L, and the P&L series
    worked past cash out of today's (reset) cash, so its equity before the reset was made up."""
    u = new_user(cash="10000")
    sym = unique_symbol()
    now = int(time.time() * 1000)
    before = [rec(u, sym, "buy", 10, "100.00", now - 2 * HOUR), rec(u, sym, "sell", 4, "150.00", now - HOUR)]
    write(index, store, before)
    settle(ledger, before)
    assert api.post(f"/accounts/{u.user_id}/reset", headers=admin).status_code == 200
    after = [rec(u, sym, "buy", 2, "120.00", int(time.time() * 1000) + 1)]  # decided after the reset
    write(index, store, after)
    settle(ledger, after)
    p = api.get("/portfolio", headers=u.auth).json()
    assert D(p["cash"]) == D("10000") - D("241.00")
    (row,) = p["positions"]
    assert (row["qty"], D(row["average_cost"]), D(row["realized_pnl"])) == (2, D("120.50"), D(0))
    window = {"from": now - 3 * HOUR, "to": now + HOUR, "interval": "1h"}
    points = api.get("/analytics/pnl", params=window, headers=u.auth).json()["points"]
    assert [(p["realized_pnl"], p["equity"]) for p in points[:2]] == [("0.00", None)] * 2  # before the reset
    assert (D(points[-1]["realized_pnl"]), D(points[-1]["equity"])) == (D(0), D("9759.00") + 2 * D("120.00"))


# ---- /portfolio -----------------------------------------------------------------------------------------------

def test_portfolio_values_the_ledger_at_the_cached_price(api: httpx.Client, new_user: Callable[..., User],
                                                         index: TradeIndex, store: TradeStore,
                                                         ledger: PortfolioStore, symbol: str) -> None:
    u = new_user(cash="50000")
    other = unique_symbol()  # held, but never priced
    now = int(time.time() * 1000)
    today = now - now % 86_400_000
    records = [rec(u, symbol, "buy", 10, "95.00", today - 2 * HOUR, fee="1.00"),
               rec(u, symbol, "buy", 20, "98.00", today - HOUR, fee="1.50"),
               rec(u, symbol, "sell", 12, "99.00", now - 1000, fee="1.00"),
               rec(u, other, "buy", 3, "20.00", now - 500, fee="0.00")]
    write(index, store, records)
    settle(ledger, records)
    answer = api.get("/portfolio", headers=u.auth)
    assert answer.status_code == 200, answer.text
    p = answer.json()
    assert p["degraded"] == []
    folded = positions(records)
    cash = D("50000") + sum((cash_delta(r) for r in records), D(0))
    assert D(p["cash"]) == cash
    by_symbol = {row["symbol"]: row for row in p["positions"]}
    assert list(by_symbol) == sorted([symbol, other])
    row = by_symbol[symbol]
    assert row["qty"] == 18
    assert D(row["average_cost"]) == folded[symbol].average_cost
    assert D(row["cost_basis"]) == folded[symbol].cost
    assert D(row["realized_pnl"]) == folded[symbol].realized
    assert row["last_price"] == "100.01"
    assert row["price_stale"] is False
    assert 0 <= row["price_age_ms"] < 120_000
    assert D(row["market_value"]) == 18 * D("100.01")
    assert D(row["unrealized_pnl"]) == 18 * D("100.01") - folded[symbol].cost
    assert D(row["day_reference_price"]) == D("98.00")  # the last fill before 00:00 UTC today
    assert D(row["day_change"]) == 18 * (D("100.01") - D("98.00"))
    unpriced = by_symbol[other]
    assert (unpriced["qty"], unpriced["last_price"], unpriced["market_value"], unpriced["price_stale"]) == (
        3, None, None, True)
    assert unpriced["average_cost"] == "20.00"
    # a held symbol without a price leaves the totals that need it unknown
    assert (p["market_value"], p["equity"], p["unrealized_pnl"]) == (None, None, None)
    assert D(p["realized_pnl"]) == folded[symbol].realized


def test_portfolio_equity_is_cash_plus_market_values(api: httpx.Client, new_user: Callable[..., User],
                                                     index: TradeIndex, store: TradeStore, ledger: PortfolioStore,
                                                     symbol: str) -> None:
    u = new_user(cash="20000")
    records = [rec(u, symbol, "buy", 7, "100.00", int(time.time() * 1000) - 1000, fee="1.25")]
    write(index, store, records)
    settle(ledger, records)
    p = api.get("/portfolio", headers=u.auth).json()
    market = sum((D(row["market_value"]) for row in p["positions"]), D(0))
    assert D(p["market_value"]) == market == 7 * D("100.01")
    assert D(p["equity"]) == D(p["cash"]) + market
    assert D(p["unrealized_pnl"]) == market - D("701.25")
    assert D(p["realized_pnl"]) == 0
    # the previous close: no fill of this symbol before today
    assert (p["positions"][0]["day_reference_price"], p["positions"][0]["day_change"], p["day_change"]) == (
        None, None, None)


def test_portfolio_while_the_read_model_has_not_seen_a_fill(api: httpx.Client, new_user: Callable[..., User],
                                                            ledger: PortfolioStore, symbol: str) -> None:
    u = new_user()
    # in the ledger only: the read models lag behind it
    settle(ledger, [rec(u, symbol, "buy", 4, "100.00", int(time.time() * 1000))])
    p = api.get("/portfolio", headers=u.auth).json()
    (row,) = p["positions"]
    assert (row["qty"], row["market_value"]) == (4, "400.04")
    assert (row["average_cost"], row["unrealized_pnl"]) == (None, None)
    assert D(p["equity"]) == D(p["cash"]) + D("400.04")


def test_without_clickhouse_the_portfolio_degrades_and_analytics_answer_503(
        api_with: Callable[..., httpx.Client], settings: Settings, new_user: Callable[..., User],
        ledger: PortfolioStore, symbol: str) -> None:
    u = new_user()
    settle(ledger, [rec(u, symbol, "buy", 2, "100.00", int(time.time() * 1000))])
    dead = free_port()
    client = api_with(clickhouse={"url": f"http://127.0.0.1:{dead}"}, opensearch={"url": f"http://127.0.0.1:{dead}"})
    p = client.get("/portfolio", headers=u.auth)
    assert p.status_code == 200, p.text
    body = p.json()
    assert body["degraded"] == ["analytics"]
    (row,) = body["positions"]
    assert (row["qty"], row["last_price"], row["market_value"]) == (2, "100.01", "200.02")
    assert (row["average_cost"], row["realized_pnl"], row["unrealized_pnl"], row["day_change"]) == (
        None, None, None, None)
    assert D(body["equity"]) == D(body["cash"]) + D("200.02")
    for path in ("/analytics/volume", "/analytics/pnl", "/trades/search"):
        answer = client.get(path, headers=u.auth)
        assert answer.status_code == 503, (path, answer.text)
        assert answer.json()["code"] == "unavailable"
        assert answer.headers["Retry-After"] == str(settings.api.retry_after_s)
