"""The test helpers' view of a process's TCP connections, on loopback sockets of this process."""

from __future__ import annotations

import os
import socket

from tradesim.testing.net import ESTABLISHED, LISTEN, open_tcp


def test_open_tcp_lists_a_connection_until_it_is_closed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        with accepted:
            inode = str(os.fstat(client.fileno()).st_ino)
            assert open_tcp([os.getpid()])[inode] == ("127.0.0.1", client.getsockname()[1], port, ESTABLISHED)
            client.close()
            assert inode not in open_tcp([os.getpid()])


def test_a_listening_socket_and_an_ipv6_address_read_as_the_socket_module_names_them() -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        port = server.getsockname()[1]
        found = open_tcp([os.getpid()])[str(os.fstat(server.fileno()).st_ino)]
    assert found == ("::1", port, 0, LISTEN)


def test_a_process_that_is_gone_holds_no_socket() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1
    assert open_tcp([beyond]) == {}
