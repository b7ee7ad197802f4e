"""Market data end to end on the real stack: Kafka → service → Redis cache + pub/sub → WebSocket."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tradesim.adapters.kafka.client import producer
from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.events import encode
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.stack import registry
from tradesim.stack.process import OsProcessTable
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import tick, ticks, unique_symbol
from tradesim.testing.letters import DeadLetters

from .conftest import cached_seq, metric, recv_json, recv_until, wait_for, ws_client

pytestmark = pytest.mark.integration


def _sub(symbol: str) -> str:
    return json.dumps({"op": "subscribe", "symbols": [symbol]})


def _publish(settings: Settings, items: list, run_id: int = 1) -> None:  # type: ignore[type-arg]
    publish_all(settings, items, run_id=run_id)


def test_cache_holds_exactly_the_last_tick_of_each_symbol(settings: Settings, cache: PriceCache) -> None:
    symbols = [unique_symbol() for _ in range(3)]
    stream = [tick(s, seq) for seq in range(1, 201) for s in symbols]  # interleaved, like a feed
    _publish(settings, stream, run_id=42)
    for s in symbols:
        wait_for(lambda s=s: cached_seq(cache, s) == 200, what=f"{s} seq 200")
        latest, _ = cache.latest(s)  # type: ignore[misc]
        assert latest == tick(s, 200, run_id=42)


def test_older_or_duplicate_quote_never_moves_the_price_back(settings: Settings, cache: PriceCache) -> None:
    s = unique_symbol()
    assert cache.apply([(t, t.model_dump_json().encode()) for t in ticks(s, 1, 10, run_id=5)], now_ms=1) == 10
    assert cache.apply([(tick(s, 3, run_id=5), b"{}"), (tick(s, 10, run_id=5), b"{}")], now_ms=2) == 0
    assert cache.apply([(tick(s, 9, run_id=4), b"{}")], now_ms=3) == 0  # an older run
    assert cached_seq(cache, s) == 10
    newer_run = tick(s, 1, run_id=6)
    assert cache.apply([(newer_run, newer_run.model_dump_json().encode())], now_ms=4) == 1  # a new replay wins


def test_websocket_gets_snapshot_then_every_update_in_order(settings: Settings, cache: PriceCache) -> None:
    s = unique_symbol()
    _publish(settings, [tick(s, 1)])
    wait_for(lambda: cached_seq(cache, s) == 1, what="first tick cached")
    with ws_client(settings) as ws:
        ws.send(_sub(s))
        assert recv_json(ws) == {"type": "subscribed", "symbols": [s]}
        snap = recv_json(ws)
        assert snap["type"] == "snapshot"
        assert snap["data"]["seq"] == 1
        _publish(settings, ticks(s, 2, 500))
        frames = recv_until(ws, lambda f: f.get("type") == "tick" and f["data"]["seq"] == 500, timeout_s=30)
    seqs = [f["data"]["seq"] for f in frames if f["type"] == "tick"]
    assert seqs == list(range(2, 501))  # no gaps, no duplicates, in order


def test_a_snapshot_says_how_long_ago_the_cache_took_its_price(settings: Settings, cache: PriceCache) -> None:
    """The age the order API judges a stale price by: a TUI opened on a stopped market showed the cached prices
    as live while orders on them were refused `stale_price`."""
    s = unique_symbol()
    written_ms = int(time.time() * 1000) - 120_000  # the market stopped two minutes ago
    assert cache.apply([(tick(s, 1), tick(s, 1).model_dump_json().encode())], now_ms=written_ms) == 1
    with ws_client(settings) as ws:
        ws.send(_sub(s))
        assert recv_json(ws)["type"] == "subscribed"
        snap = recv_json(ws)
        took_ms = int(time.time() * 1000) - written_ms
    assert snap["type"] == "snapshot"
    assert snap["data"]["seq"] == 1
    assert 120_000 <= snap["age_ms"] <= took_ms


def _frames_until(ws: ClientConnection, until: float) -> list[tuple[float, str]]:
    """(arrival time, type) of every frame until the monotonic time `until`."""
    got = []
    while (left := until - time.monotonic()) > 0:
        try:
            raw = ws.recv(timeout=left)
        except TimeoutError:
            break
        got.append((time.monotonic(), json.loads(raw)["type"]))  # stamped on arrival, not when recv began
    return got


def test_heartbeats_go_to_quiet_connections_only(settings: Settings, cache: PriceCache) -> None:
    """A connection that was sent something within half of heartbeat_s gets no heartbeat; one that gets nothing
    hears one before heartbeat_s is over."""
    beat = settings.marketdata.heartbeat_s
    s = unique_symbol()
    _publish(settings, [tick(s, 1)])
    wait_for(lambda: cached_seq(cache, s) == 1, what="first tick cached")
    stop = threading.Event()

    def feed() -> None:  # a price every 0.2 s, far inside the half interval
        p = producer(settings.kafka)
        seq = 1
        while not stop.wait(0.2):
            seq += 1
            t = tick(s, seq)
            p.produce(settings.topics.market_data, key=t.key, value=encode(t))
            p.flush(5)

    with ws_client(settings) as busy, ws_client(settings) as quiet:
        opened = time.monotonic()
        busy.send(_sub(s))
        feeder = threading.Thread(target=feed)
        feeder.start()
        until = opened + 2.5 * beat
        quiet_frames: list[tuple[float, str]] = []
        quiet_reader = threading.Thread(target=lambda: quiet_frames.extend(_frames_until(quiet, until)))
        quiet_reader.start()
        try:
            busy_frames = _frames_until(busy, until)
        finally:
            quiet_reader.join()
            stop.set()
            feeder.join()
    assert sum(kind == "tick" for _, kind in busy_frames) >= 10
    # any heartbeat the busy connection got came after half an interval with nothing (a stalled feed), never
    # between prices (the old schedule sent one to every client every interval)
    for (before, _), (at, kind) in zip(busy_frames, busy_frames[1:], strict=False):
        assert kind != "heartbeat" or at - before >= beat / 2 - 0.1
    beats = [at for at, kind in quiet_frames if kind == "heartbeat"]
    assert len(beats) >= 2
    assert [kind for _, kind in quiet_frames] == ["heartbeat"] * len(beats)
    assert max(b - a for a, b in zip([opened, *beats], beats, strict=False)) < beat


def test_slow_client_does_not_delay_a_fast_one_and_gets_the_latest_price(settings: Settings,
                                                                         cache: PriceCache) -> None:
    s = unique_symbol()
    n = 12000
    _publish(settings, [tick(s, 1)])
    wait_for(lambda: cached_seq(cache, s) == 1, what="first tick cached")
    drops_before = metric(settings, "tradesim_marketdata_queue_drops_total")
    with ws_client(settings, rcvbuf=4096) as slow, ws_client(settings) as fast:
        for ws in (slow, fast):
            ws.send(_sub(s))
            assert recv_json(ws)["type"] == "subscribed"
            assert recv_json(ws)["type"] == "snapshot"
        fast_seqs: list[int] = []

        def read_fast() -> None:
            for f in recv_until(fast, lambda f: f.get("type") == "tick" and f["data"]["seq"] == n, timeout_s=60):
                if f["type"] == "tick":
                    fast_seqs.append(f["data"]["seq"])

        # A client that falls client_queue (5,000) frames behind is by definition slow, and a reader thread in this
        # process on a busy 2-core box can stall for a second: so the feed is paced (about 4,000 ticks/s, encoded
        # up front), which a fast client always keeps up with, while the slow one (reading nothing) overflows.
        frames = [(t.key, encode(t)) for t in ticks(s, 2, n)]
        feed = producer(settings.kafka)
        reader = threading.Thread(target=read_fast)
        reader.start()
        start = time.monotonic()
        for i in range(0, len(frames), 400):
            for key, value in frames[i:i + 400]:
                feed.produce(settings.topics.market_data, key=key, value=value)
            feed.flush(10)
            pause = start + (i + 400) / 4000 - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the pace of the feed, not a wait for a condition
        assert feed.flush(30) == 0
        reader.join(timeout=90)
        fast_done = time.monotonic() - start
        assert fast_seqs == list(range(2, n + 1)), "the fast client must get every update while another stalls"

        # Now the slow client reads: it must end on the latest price, having been conflated on the way.
        slow_frames = recv_until(slow, lambda f: f.get("type") == "tick" and f["data"]["seq"] == n, timeout_s=30)
    slow_ticks = [f["data"]["seq"] for f in slow_frames if f["type"] == "tick"]
    assert slow_ticks[-1] == n
    assert slow_ticks == sorted(slow_ticks)
    assert len(slow_ticks) < n - 1, "the slow client's queue should have been conflated"
    assert metric(settings, "tradesim_marketdata_queue_drops_total") > drops_before
    print(f"fast client received {n - 1} updates in {fast_done:.2f} s while a slow client stalled; "
          f"slow client got {len(slow_ticks)} frames ending at seq {slow_ticks[-1]}")


def test_protocol_errors_get_error_frames_and_connection_stays_usable(settings: Settings, cache: PriceCache) -> None:
    s = unique_symbol()
    _publish(settings, [tick(s, 1)])
    wait_for(lambda: cached_seq(cache, s) == 1, what="tick cached")
    with ws_client(settings) as ws:
        ws.send("garbage{")
        err = recv_json(ws)
        assert (err["type"], err["code"]) == ("error", "bad_request")
        ws.send('{"op": "dance"}')
        assert recv_json(ws)["code"] == "bad_request"
        ws.send(b"\x00\x01")
        assert recv_json(ws)["code"] == "bad_request"
        ws.send("[" * 20_000 + "]" * 20_000)  # deeper than Python's stack
        assert recv_json(ws)["code"] == "bad_request"
        # a lone surrogate (valid JSON) crashed the handler: close 1011; now it is no symbol, and the others are served
        ws.send(json.dumps({"op": "subscribe", "symbols": [s, "\ud800", "BRK/B"]}))
        err = recv_json(ws)
        assert (err["code"], sorted(err["symbols"])) == ("unknown_symbol", sorted(["\ud800", "BRK/B"]))
        assert recv_json(ws) == {"type": "subscribed", "symbols": [s]}
        assert recv_json(ws)["type"] == "snapshot"
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": ["\udfff"], "interval": "1s"}))
        assert recv_json(ws)["code"] == "unknown_symbol"
        ws.send(json.dumps({"op": "unsubscribe", "symbols": [s]}))
        assert recv_json(ws) == {"type": "unsubscribed", "symbols": [s]}
        # names that are no symbols: confirmed as nothing unsubscribed (before: no answer at all)
        ws.send(json.dumps({"op": "unsubscribe", "symbols": ["a b"]}))
        assert recv_json(ws) == {"type": "unsubscribed", "symbols": []}
        ws.send(json.dumps({"op": "unsubscribe_bars", "symbols": ["*"], "interval": "1m"}))
        assert recv_json(ws) == {"type": "unsubscribed_bars", "symbols": [], "interval": "1m"}
        ghost = unique_symbol("Z")
        ws.send(_sub(ghost))
        err = recv_json(ws)
        assert (err["code"], err["symbols"]) == ("unknown_symbol", [ghost])
        ws.send(_sub(s))  # still usable
        assert recv_json(ws) == {"type": "subscribed", "symbols": [s]}
        assert recv_json(ws)["data"]["seq"] == 1


def test_malformed_tick_goes_to_dead_letter_and_service_keeps_going(settings: Settings, cache: PriceCache) -> None:
    tag = uuid.uuid4().hex
    before = metric(settings, "tradesim_marketdata_dead_letters_total")
    reader = DeadLetters(settings)
    p = producer(settings.kafka)
    p.produce(settings.topics.market_data, key=b"BAD", value=f'{{"type":"tick","tag":"{tag}"}}'.encode())
    p.produce(settings.topics.market_data, key=b"BAD", value=b"\xff not json " + tag.encode())
    assert p.flush(10) == 0
    try:
        letters = reader.wait(tag, 2, consumer="marketdata", timeout_s=30)  # not the bars job's letters
    finally:
        reader.close()
    assert len(letters) == 2  # the topic's one schema, as the jobs and persistence write it
    assert all(x.reason.startswith("invalid tick:") for x in letters)
    assert {(x.consumer, x.source_topic) for x in letters} == {("marketdata", settings.topics.market_data)}
    assert sorted(x.record for x in letters) == sorted([f'{{"type":"tick","tag":"{tag}"}}', f"\ufffd not json {tag}"])
    wait_for(lambda: metric(settings, "tradesim_marketdata_dead_letters_total") >= before + 2, what="counter")
    s = unique_symbol()
    _publish(settings, [tick(s, 1)])
    wait_for(lambda: cached_seq(cache, s) == 1, what="a good tick after the bad ones")


def test_redis_restart_under_the_service(settings: Settings, cache: PriceCache, supervisor: Supervisor) -> None:
    md = supervisor.state_file.load().components["marketdata"]
    redis_only = Supervisor(settings, registry.build(settings, ["redis"]))
    s = unique_symbol()
    redis_only.down()
    _publish(settings, ticks(s, 1, 50))  # the service cannot write now; it must keep the batch and retry
    redis_only.up()
    wait_for(lambda: cached_seq(cache, s) == 50, timeout_s=60, what="cache repopulated after Redis restart")
    assert OsProcessTable().is_alive(md.handle), "the service must survive a Redis restart (no crash loop)"
    # Pub/sub reconnects too (its two patterns on the new server; the service alone subscribes to patterns). The
    # cache can be written before that: what is published in between reaches no one (before: the test raced it
    # and, on a slow box, published 51..60 into that gap and waited for a frame that could not come).
    with redis_connect(settings.redis) as r:
        wait_for(lambda: r.pubsub_numpat() >= 2, timeout_s=30, what="the service's pub/sub back on Redis")
    # a new subscriber gets live updates
    with ws_client(settings) as ws:
        ws.send(_sub(s))
        assert recv_json(ws)["type"] == "subscribed"
        _publish(settings, ticks(s, 51, 60))
        frames = recv_until(ws, lambda f: f.get("type") == "tick" and f["data"]["seq"] == 60, timeout_s=30)
    assert frames[-1]["data"]["seq"] == 60


def test_a_price_published_while_pubsub_reconnects_still_reaches_subscribers(settings: Settings,
                                                                              cache: PriceCache) -> None:
    """A tick published while the service's pub/sub connection is away reaches no one; once it has subscribed again,
    the service sends each subscribed symbol's cached price that moved, once, and then the ticks after it in order."""
    s = unique_symbol()
    _publish(settings, [tick(s, 1)])
    wait_for(lambda: cached_seq(cache, s) == 1, what="first tick cached")
    with ws_client(settings) as ws, redis_connect(settings.redis) as r:
        ws.send(_sub(s))
        assert recv_json(ws)["type"] == "subscribed"
        assert recv_json(ws)["data"]["seq"] == 1
        listeners = [c["id"] for c in r.client_list(_type="pubsub") if int(c["psub"]) > 0]
        assert listeners, "the service listens with patterns"
        moved = tick(s, 2)
        drop_then_write = r.pipeline(transaction=True)  # one transaction: the tick is published to no listener
        for client_id in listeners:
            drop_then_write.client_kill_filter(_id=client_id)
        cache.stage(drop_then_write, [(moved, encode(moved))], now_ms=int(time.time() * 1000))
        drop_then_write.execute()
        assert cached_seq(cache, s) == 2
        frames = recv_until(ws, lambda f: f.get("type") == "tick" and f["data"]["seq"] == 2, timeout_s=30)
        _publish(settings, ticks(s, 3, 5))
        frames += recv_until(ws, lambda f: f.get("type") == "tick" and f["data"]["seq"] == 5, timeout_s=30)
    assert [f["data"]["seq"] for f in frames if f["type"] == "tick"] == [2, 3, 4, 5]


def test_a_message_that_is_not_a_tick_on_a_price_channel_is_skipped_and_the_feed_goes_on(settings: Settings,
                                                                                          cache: PriceCache) -> None:
    """Anyone who can reach Redis can PUBLISH on the price and bar channels: before, one such message ended the
    service's listener, and no client got another price while the service looked healthy."""
    s = unique_symbol()
    _publish(settings, [tick(s, 1)])
    wait_for(lambda: cached_seq(cache, s) == 1, what="first tick cached")
    bad_before = metric(settings, "tradesim_marketdata_bad_updates_total")
    with ws_client(settings) as ws, redis_connect(settings.redis) as r:
        ws.send(_sub(s))
        assert recv_json(ws)["type"] == "subscribed"
        assert recv_json(ws)["data"]["seq"] == 1
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": [s], "interval": "1s"}))
        assert recv_json(ws)["type"] == "bars"
        other = tick(unique_symbol(), 9).model_dump_json()
        junk: list[str | bytes] = ["hello", "[]", f'{{"symbol": "{s}", "seq": Infinity}}', "{}", b"\xff\xfe",
                                   "[" * 100_000, other]  # not UTF-8; nested too deep; another symbol's tick
        for message in junk:
            assert r.publish(f"prices:{s}", message) == 1  # one pattern subscriber: the service
        assert r.publish(f"bars:{s}:1s", "not a bar") == 1
        assert r.publish(b"prices:\xff", tick(s, 9).model_dump_json()) == 1  # a channel name not UTF-8
        _publish(settings, [tick(s, 2)])
        frames = recv_until(ws, lambda f: f.get("type") == "tick", timeout_s=30)
    assert frames[-1]["data"]["seq"] == 2
    assert metric(settings, "tradesim_marketdata_bad_updates_total") - bad_before == len(junk) + 2


def test_a_subscription_redis_refused_holds_nothing(settings: Settings, cache: PriceCache) -> None:
    """The snapshot read fails after the client was registered: it gets `unavailable` and is not subscribed (before,
    it went on getting that symbol's ticks with no ack and no snapshot)."""
    refused, other = unique_symbol(), unique_symbol()
    _publish(settings, [tick(refused, 1), tick(other, 1)])
    wait_for(lambda: cached_seq(cache, refused) == 1 and cached_seq(cache, other) == 1, what="both cached")
    with ws_client(settings) as ws, redis_connect(settings.redis) as r:
        r.acl_setuser("default", enabled=True, commands=["-hget"])  # the snapshot read only (the cache uses HMGET)
        try:
            ws.send(_sub(refused))
            answer = recv_json(ws)
        finally:
            r.acl_setuser("default", enabled=True, commands=["+hget"])
        assert (answer["type"], answer["code"]) == ("error", "unavailable"), answer
        _publish(settings, [tick(refused, 2)])
        wait_for(lambda: cached_seq(cache, refused) == 2, what="the refused symbol's tick published")
        ws.send(_sub(other))
        _publish(settings, [tick(other, 2)])  # after the refused symbol's tick on the same pub/sub connection
        frames = recv_until(ws, lambda f: f.get("type") == "tick" and f["data"]["symbol"] == other, timeout_s=30)
    assert [f["data"]["symbol"] for f in frames if f["type"] in ("tick", "snapshot")] == [other, other]


def _closed_with(ws: ClientConnection, timeout_s: float = 30, pause_s: float = 0.0) -> tuple[int | None, list[dict]]:  # type: ignore[type-arg]
    """Read (one frame per `pause_s`: a slow reader) until the server closes; (close code, the error frames)."""
    errors = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame.get("type") == "error":
                errors.append(frame)
            time.sleep(pause_s)  # noqa: ASYNC251 - the slow reader under test, not a wait for a condition
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), errors
    raise AssertionError("the server did not close the connection")


def test_a_client_sending_bad_frames_in_a_loop_is_closed_1008(settings: Settings) -> None:
    with ws_client(settings) as ws:
        for i in range(200):
            try:
                ws.send(f"not json {i}")
            except ConnectionClosed:
                break
        code, errors = _closed_with(ws)
    assert code == 1008
    assert errors[-1]["code"] == "too_many_bad_frames"
    assert sum(e["code"] == "bad_request" for e in errors) < 20  # answered up to the limit, then closed


def test_a_client_that_asks_without_reading_is_closed_not_queued_without_bound(settings: Settings,
                                                                              cache: PriceCache) -> None:
    """Replies are never conflated (acks, snapshots): what bounds them is closing a client that does not read."""
    s = unique_symbol()
    _publish(settings, [tick(s, 1)])
    wait_for(lambda: cached_seq(cache, s) == 1, what="the price cached (an unknown symbol is a bad request)")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((settings.marketdata.host, settings.marketdata.ws_port))
        # max_queue=1: the client library stops reading the socket while a frame waits to be taken
        with connect(settings.marketdata.client_ws_url, sock=sock, open_timeout=5, max_queue=1) as ws:
            request = _sub(s)
            try:
                for _ in range(8_000):  # 16,000 replies asked for: well past CONTROL_QUEUE
                    ws.send(request)
            except ConnectionClosed:
                pass
            # ~200 frames/s, far slower than the replies come, yet fast enough to read what the buffers hold
            # before the server's close handshake times out
            code, errors = _closed_with(ws, 90, pause_s=0.005)
    assert code == 1008
    assert errors[-1]["code"] == "too_many_unread_replies"
