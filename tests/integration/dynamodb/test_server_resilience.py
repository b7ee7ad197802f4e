"""The local DynamoDB server outlives clients that vanish in the middle of a request (a killed TaskManager)."""

from __future__ import annotations

import socket
import struct

import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.settings import Settings
from tradesim.stack.supervisor import Supervisor

pytestmark = pytest.mark.integration


def _pid(supervisor: Supervisor) -> int | None:
    return {s.name: s for s in supervisor.status()}["dynamodb"].pid


def test_a_client_reset_mid_request_does_not_take_the_server_down(settings: Settings,
                                                                 supervisor: Supervisor) -> None:
    before = _pid(supervisor)
    for _ in range(3):
        with socket.create_connection((settings.dynamodb.host, settings.dynamodb.port), timeout=5) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\n"
                      b"X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\n\r\n{\"Li")
            # close with RST, as the kernel does for a process killed with SIGKILL mid-send
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    db = DynamoDB(settings.dynamodb)
    try:
        assert "TableNames" in db.client.list_tables(Limit=1)
    finally:
        db.close()
    assert _pid(supervisor) == before
