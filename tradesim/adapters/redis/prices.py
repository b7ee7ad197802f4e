"""The latest-price cache: one hash per symbol, written only if the quote is newer, published on change.

Ordering is by (run_id, seq): a Kafka re-delivery or a duplicate carries an older pair and is ignored, so a
price never moves backwards; a newer replay run supersedes an older one. The check-and-write-and-publish is
one Lua script, so it is atomic even with several market-data service copies writing at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import redis
from redis.client import NEVER_DECODE

from tradesim.adapters.redis.client import BatchScript, ScriptCall
from tradesim.adapters.redis.codec import read_event
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import MAX_EPOCH_MS, Tick

SYMBOLS_KEY = "price:symbols"
# KEYS: one price hash per tick, then the symbol set. ARGV[1]: now_ms; then 5 per tick: run, seq, json, channel, sym.
# A price hash (or the symbol set) that is not ours to read — another type, or a run id or seq that is not a finite
# number (edited by hand) — is replaced by the tick: failing the script instead stalled every symbol's feed for ever.
_APPLY = """
local function ordinal(v)
  local x = tonumber(v or '')
  if x == nil or x ~= x or x == math.huge or x == -math.huge then return -1 end
  return x
end
local n = #KEYS - 1
local applied = 0
for i = 1, n do
  local b = 1 + (i - 1) * 5
  local cur = redis.pcall('HMGET', KEYS[i], 'run_id', 'seq')
  if cur.err then redis.call('DEL', KEYS[i]) cur = {} end
  local cur_run = ordinal(cur[1])
  local cur_seq = ordinal(cur[2])
  local run = tonumber(ARGV[b + 1])
  local seq = tonumber(ARGV[b + 2])
  if run > cur_run or (run == cur_run and seq > cur_seq) then
    redis.call('HSET', KEYS[i], 'run_id', ARGV[b + 1], 'seq', ARGV[b + 2], 'tick', ARGV[b + 3], 'updated_ms', ARGV[1])
    if type(redis.pcall('SADD', KEYS[n + 1], ARGV[b + 5])) == 'table' then  -- an error reply: not a set
      redis.call('DEL', KEYS[n + 1])
      redis.call('SADD', KEYS[n + 1], ARGV[b + 5])
    end
    redis.call('PUBLISH', ARGV[b + 4], ARGV[b + 3])
    applied = applied + 1
  end
end
return applied
"""
#: ticks per script call: big enough to amortise the round trip, small enough not to stall Redis (~1 ms)
CHUNK = 256
# KEYS[1]: the symbol set. ARGV[1]: the price key prefix. Drops the members whose price hash is gone (expired),
# atomically with the apply script, which adds a member back with its hash.
_PRUNE = """
local kept = {}
for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. s) == 1 then
    table.insert(kept, s)
  else
    redis.call('SREM', KEYS[1], s)
  end
end
return kept
"""
PRICE_KEY_PREFIX = "price:"


def price_key(symbol: str) -> str:
    return PRICE_KEY_PREFIX + symbol


CHANNEL_PREFIX = "prices:"
CHANNEL_PATTERN = CHANNEL_PREFIX + "*"


def channel(symbol: str) -> str:
    return CHANNEL_PREFIX + symbol


_EPOCH_DIGITS = len(str(MAX_EPOCH_MS))


def written_ms(raw: bytes | str | None) -> int:
    """A price hash's `updated_ms`; 0 (as old as can be: stale) when missing or not ours to read: not digits only,
    or past MAX_EPOCH_MS (before, 4,301 digits or more raised ValueError out of the order API and a snapshot)."""
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw or ""
    if not (len(text) <= _EPOCH_DIGITS and text.isascii() and text.isdigit()):
        return 0
    ms = int(text)
    return ms if ms <= MAX_EPOCH_MS else 0


def read_tick(raw: bytes | str, symbol: str | None = None) -> tuple[Tick, str]:
    """A cached or published tick and its JSON text (to send on as is). Raises InvalidRecord: not UTF-8, not a Tick
    within the schema's bounds, or (given `symbol`) another symbol's."""
    tick, text = read_event(Tick, raw)
    if symbol is not None and tick.symbol != symbol:
        raise InvalidRecord("symbol", f"a tick of {tick.symbol!r} where {symbol!r}'s belongs")
    return tick, text


def ask_price(target: Any, symbol: str) -> Any:
    """Send (a client, sync or async) or queue (a pipeline) the read of `symbol`'s price hash, for `cached_tick`.

    Answered as bytes whatever the client decodes: a client that decodes raises UnicodeDecodeError (no RedisError)
    on a value not UTF-8, which failed the whole read (the order API answered 500); here each value is checked."""
    return target.execute_command("HMGET", price_key(symbol), "tick", "updated_ms", **{NEVER_DECODE: []})


def cached_tick(raw: list[Any], symbol: str) -> tuple[Tick, int] | None:
    """`symbol`'s price hash's (tick, updated_ms) as `ask_price` read it, or None: never written, or not a tick of
    `symbol` within the schema's bounds (another symbol's, not UTF-8, or written before the bounds and out of them
    now): treated as no price until the next tick replaces it."""
    if raw[0] is None:
        return None
    try:
        return read_tick(raw[0], symbol)[0], written_ms(raw[1])
    except InvalidRecord:
        return None


class PriceCache:
    """Synchronous side of the cache, used by the consumer and by readers (order API, CLI)."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._script = BatchScript(client, _APPLY)
        self._prune = client.register_script(_PRUNE)

    def apply(self, ticks: Iterable[tuple[Tick, bytes]], now_ms: int) -> int:
        """Write-through a batch (tick, its encoded JSON) in one round trip; returns how many were newer.

        Ticks are applied in order, so several ticks of one symbol in a batch all get published.
        """
        return sum(int(r) for r in self._script.run(self._calls(ticks, now_ms)))

    def stage(self, pipe: redis.client.Pipeline, ticks: Iterable[tuple[Tick, bytes]], now_ms: int) -> int:
        """Add the writes of `apply` to the caller's pipeline; returns how many script calls. A transactional
        pipeline makes them atomic with other commands in it."""
        calls = self._calls(ticks, now_ms)
        self._script.queue(pipe, calls)
        return len(calls)

    @staticmethod
    def _calls(ticks: Iterable[tuple[Tick, bytes]], now_ms: int) -> list[ScriptCall]:
        """One script call per CHUNK ticks."""
        calls: list[ScriptCall] = []
        keys: list[str] = []
        args: list[bytes | str | int] = [now_ms]
        for tick, raw in ticks:
            keys.append(price_key(tick.symbol))
            args += [tick.run_id, tick.seq, raw, channel(tick.symbol), tick.symbol]
            if len(keys) == CHUNK:
                calls.append(([*keys, SYMBOLS_KEY], args))
                keys, args = [], [now_ms]
        if keys:
            calls.append(([*keys, SYMBOLS_KEY], args))
        return calls

    def latest(self, symbol: str) -> tuple[Tick, int] | None:
        """The cached tick and the wall time (ms) it was written, or None if the symbol was never seen."""
        return cached_tick(cast(list[Any], ask_price(self._r, symbol)), symbol)

    def latest_many(self, symbols: Iterable[str]) -> dict[str, Tick]:
        """The cached tick of each of these symbols that has one, in one round trip."""
        wanted = list(symbols)
        pipe = self._r.pipeline(transaction=False)
        for symbol in wanted:
            ask_price(pipe, symbol)
        answers: list[Any] = pipe.execute() if wanted else []
        found = ((symbol, cached_tick(raw, symbol)) for symbol, raw in zip(wanted, answers, strict=True))
        return {symbol: hit[0] for symbol, hit in found if hit is not None}

    def symbols(self) -> list[str]:
        """Every symbol with a cached price (those whose price expired are forgotten on the way)."""
        return sorted(self._prune(keys=[SYMBOLS_KEY], args=[PRICE_KEY_PREFIX]))

    def retire(self, symbols: Iterable[str], after_s: int) -> None:
        """Let these symbols' prices expire after_s from now (a scripted run's own symbols, at its end): nothing
        publishes them again, and kept for ever they only fill Redis."""
        pipe = self._r.pipeline(transaction=False)
        for symbol in symbols:
            pipe.expire(price_key(symbol), after_s)
        pipe.execute()
