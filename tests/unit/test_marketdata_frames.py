"""The fan-out's frame bytes: what the websockets library itself writes for a server, and what its parser (a
client's) reads back."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from tradesim.services.marketdata.ws import text_frame


def _parse(data: bytes) -> tuple[Frame, bytes]:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        return done.value, reader.buffer
    raise AssertionError("the parser wanted more bytes than the frame has")


# 125 and 126 / 65535 and 65536 are where the header's length field changes size (RFC 6455 §5.2)
@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_a_fan_out_frame_is_one_whole_unmasked_final_text_frame(size: int) -> None:
    text = "é" + "x" * (size - 2) if size >= 2 else "x" * size  # é: two bytes, so UTF-8 is encoded too
    assert len(text.encode()) == size
    frame, rest = _parse(text_frame(text))
    assert (frame.opcode, frame.fin, frame.data.decode()) == (Opcode.TEXT, True, text)
    assert rest == b""  # nothing left over: a client reads the next frame from the right byte
    library = ServerProtocol()
    library.state = State.OPEN  # past the opening handshake, which this comparison does not need
    library.send_text(text.encode())
    assert library.data_to_send() == [text_frame(text)]  # byte for byte what `broadcast` would have written
