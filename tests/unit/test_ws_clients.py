"""The benchmark's light WebSocket clients speak the protocol a real `websockets` server expects: the fleet is the
instrument of `tradesim bench marketdata`, and one that misreads frames would measure nothing (or the wrong
thing) on both sides."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import ServerConnection, broadcast, serve

from benchmarks.ws_clients import CLOSE, CONTINUATION, TEXT, FleetError, client_frame, parse_frames, run


def _unmask(frame: bytes) -> tuple[int, bytes]:
    assert frame[1] & 0x80, "a client frame must be masked"
    size, mask = frame[1] & 0x7F, frame[2:6]
    return frame[0], bytes(b ^ mask[i % 4] for i, b in enumerate(frame[6:6 + size]))


def test_client_frames_are_final_masked_and_unmask_to_the_payload() -> None:
    head, payload = _unmask(client_frame(TEXT, b'{"op":"subscribe"}'))
    assert head == 0x80 | TEXT
    assert payload == b'{"op":"subscribe"}'


def test_parse_frames_reads_short_and_16_bit_lengths_and_keeps_a_partial_frame() -> None:
    long = b"x" * 300
    buf = bytearray(bytes([0x81, 2]) + b"hi" + bytes([0x81, 126]) + len(long).to_bytes(2, "big") + long
                    + bytes([0x88, 5]) + b"by")  # the close frame is cut short
    frames, used = parse_frames(buf)
    assert frames == [(True, TEXT, b"hi"), (True, TEXT, long)]
    assert used == 4 + 4 + 300
    buf += b"e!!"
    del buf[:used]
    assert parse_frames(buf) == ([(True, CLOSE, b"bye!!")], 7)


def test_parse_frames_reads_64_bit_lengths_and_the_final_bit() -> None:
    big = b"z" * 70_000
    buf = bytearray(bytes([0x01, 127]) + len(big).to_bytes(8, "big") + big + bytes([0x80 | CONTINUATION, 0]))
    assert parse_frames(buf) == ([(False, TEXT, big), (True, CONTINUATION, b"")], 10 + 70_000 + 2)


async def _refusing_server(reply: bytes, handlers: list[asyncio.Task[None]]) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
            await reader.read()  # until the client hangs up
        finally:
            writer.close()

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.create_task(answer(reader, writer)))

    return await asyncio.start_server(track, "127.0.0.1", 0)


@pytest.mark.parametrize(("reply", "says"), [
    (b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", "refused: HTTP/1.1 403 Forbidden"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + bytes([0x81, 35]) + b'{"type":"error","code":"unknown_sy"}',
     "subscription refused"),
])
def test_a_client_that_cannot_get_ready_fails_the_fleet_at_once_with_the_reason(reply: bytes, says: str) -> None:
    async def scenario() -> None:
        handlers: list[asyncio.Task[None]] = []
        server = await _refusing_server(reply, handlers)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.wait_for(run(f"ws://127.0.0.1:{port}/", "ABC", 3, 1, "tradesim", 5, lambda: None), 10)
        finally:
            server.close()
            # the fleet hung up on every connection, so each handler ends
            await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 10)

    with pytest.raises(FleetError, match=says):
        asyncio.run(scenario())


def test_a_fleet_is_ready_once_subscribed_answers_pings_and_records_every_tick_until_the_last() -> None:
    async def scenario() -> dict:
        conns: set[ServerConnection] = set()
        subscribed: list[str] = []
        acked: list[bool] = []
        pongs: list[float] = []
        all_ponged = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            subscribed.append(str(await ws.recv()))
            await asyncio.sleep(0.05)  # a server slow to register: the fleet is not ready until it has
            acked.append(True)
            await ws.send(json.dumps({"type": "subscribed", "symbols": ["ABC"]}))
            conns.add(ws)
            pongs.append(await (await ws.ping()))  # answered by the client, or this never returns
            if len(pongs) == 12:
                all_ponged.set()
            await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            ready = asyncio.Event()
            fleet = asyncio.create_task(run(f"ws://127.0.0.1:{port}/ws", "ABC", 12, 3, "tradesim", 30, ready.set))
            await asyncio.wait_for(ready.wait(), 30)
            assert len(acked) == 12
            await asyncio.wait_for(all_ponged.wait(), 30)  # every client subscribed and answered its ping
            for seq in (1, 2, 3):
                tick = {"symbol": "ABC", "seq": seq, "event_time_ms": 0, "note": "y" * 200 * seq}
                # compact, as the service and the bare server send it (the fleet spots the last seq by substring)
                broadcast(conns, json.dumps({"type": "tick", "data": tick}, separators=(",", ":")))
            result = await asyncio.wait_for(fleet, 30)
        assert subscribed == [json.dumps({"op": "subscribe", "symbols": ["ABC"]})] * 12
        return result

    result = asyncio.run(scenario())
    assert result["frames"] == 36
    assert result["clients_done"] == 12
    assert result["samples"] == 2 * 3  # clients 0 and 10 sample, one latency per tick
