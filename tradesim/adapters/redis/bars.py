"""Recent bars per symbol and interval: a capped sorted set by window start, published on change.

Clients (the TUI's chart and sparklines) need a short history on connect and every new bar after it. Bars of one
symbol arrive in window order (one Kafka partition per symbol, emitted at the watermark), so a bar whose window
starts before the newest kept one means the market's clock went back: a new scenario run started. The set then
starts over, so a chart never mixes two runs. A bar for a window already kept (a re-delivery) replaces it.
Check, write, trim and publish are one Lua script, atomic with several service copies writing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import redis

from tradesim.adapters.redis.client import BatchScript, ScriptCall
from tradesim.adapters.redis.codec import read_event
from tradesim.adapters.redis.prices import price_key
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import BAR_INTERVALS, Bar

#: bars kept per symbol and interval: 5 min of 1 s bars, 5 h of 1 min bars
KEEP = 300
CHANNEL_PREFIX = "bars:"
CHANNEL_PATTERN = CHANNEL_PREFIX + "*"

# KEYS: 2 per bar, its bar set and its symbol's price hash. ARGV: keep, then 3 per bar: window start, json, channel.
# A bar set takes the expiry its price hash has (a scripted run's symbols expire after the run, PriceCache.retire):
# a bar written after the retire, or a set rebuilt by the DEL below, would otherwise stay for good.
_APPLY = """
local keep = tonumber(ARGV[1])
for i = 1, #KEYS / 2 do
  local key = KEYS[2 * i - 1]
  local b = 2 + (i - 1) * 3
  local start = tonumber(ARGV[b])
  local top = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  if top[2] ~= nil and start < tonumber(top[2]) then
    redis.call('DEL', key)
  end
  redis.call('ZREMRANGEBYSCORE', key, start, start)
  redis.call('ZADD', key, start, ARGV[b + 1])
  redis.call('ZREMRANGEBYRANK', key, 0, -(keep + 1))
  local ttl = redis.call('PTTL', KEYS[2 * i])
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  end
  redis.call('PUBLISH', ARGV[b + 2], ARGV[b + 1])
end
return #KEYS / 2
"""
CHUNK = 256


def bars_key(symbol: str, interval: str) -> str:
    return f"bars:{symbol}:{interval}"


def channel(symbol: str, interval: str) -> str:
    return f"{CHANNEL_PREFIX}{symbol}:{interval}"


def parse_channel(name: str) -> tuple[str, str]:
    """(symbol, interval) of a bar channel name."""
    symbol, _, interval = name[len(CHANNEL_PREFIX):].rpartition(":")
    return symbol, interval


def read_bar(raw: bytes | str, symbol: str, interval: str) -> tuple[Bar, str]:
    """A cached or published bar of this symbol and interval, and its JSON text (to send on as is). Raises
    InvalidRecord: not UTF-8, not a Bar within the schema's bounds, or another key's."""
    bar, text = read_event(Bar, raw)
    if (bar.symbol, bar.interval) != (symbol, interval):
        raise InvalidRecord("symbol", f"a {bar.interval} bar of {bar.symbol!r} where {symbol!r}'s {interval} bars "
                            "belong")
    return bar, text


class BarCache:
    """Synchronous writer and reader of the recent-bars sets."""

    def __init__(self, client: redis.Redis, keep: int = KEEP) -> None:
        self._r = client
        self._keep = keep
        self._script = BatchScript(client, _APPLY)

    def apply(self, bars: Iterable[tuple[Bar, bytes]]) -> int:
        """Write a batch (bar, its encoded JSON) in order, in one round trip; returns how many were written."""
        calls: list[ScriptCall] = []
        keys: list[str] = []
        args: list[bytes | str | int] = [self._keep]
        written = 0
        for bar, raw in bars:
            keys += [bars_key(bar.symbol, bar.interval), price_key(bar.symbol)]
            args += [bar.window_start_ms, raw, channel(bar.symbol, bar.interval)]
            written += 1
            if len(keys) == 2 * CHUNK:
                calls.append((keys, args))
                keys, args = [], [self._keep]
        if keys:
            calls.append((keys, args))
        self._script.run(calls)
        return written

    def retire(self, symbols: Iterable[str], after_s: int) -> None:
        """Let these symbols' recent bars expire after_s from now (PriceCache.retire's twin; a bar written later
        takes its price hash's expiry)."""
        pipe = self._r.pipeline(transaction=False)
        for symbol in symbols:
            for interval in BAR_INTERVALS:
                pipe.expire(bars_key(symbol, interval), after_s)
        pipe.execute()

    def recent(self, symbol: str, interval: str, count: int = KEEP) -> list[str]:
        """The newest `count` bars' JSON, oldest first."""
        got = cast(list[Any], self._r.zrange(bars_key(symbol, interval), -count, -1))  # sync client: a list
        return [g.decode() if isinstance(g, bytes) else g for g in got]
