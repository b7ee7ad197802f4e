"""The API's HTTP protocol: uvicorn's own (httptools, else h11), except that bytes which are not a valid HTTP
request (what the parser refuses: a broken request line or header line, a URL too long for it, TLS on the plain
port) are answered with the API's JSON problem body, not uvicorn's plain text."""

from __future__ import annotations

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from tradesim.services.api.errors import problem_bytes

NOT_HTTP_MESSAGE = ("not a valid HTTP/1.1 request: the request line or a header could not be parsed (a URL of "
                    "tens of KiB can be too long for the parser)")


def not_http_response(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole 400 answer, with the server's default headers (date, server); the connection closes after it."""
    body = problem_bytes("bad_request", NOT_HTTP_MESSAGE, None)
    head = [b"HTTP/1.1 400 Bad Request", *(name + b": " + value for name, value in default_headers),
            b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class JsonErrorsHttpProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's protocol with a JSON body for a request it cannot parse (its `send_400_response`)."""

    def send_400_response(self, msg: str) -> None:
        self.transport.write(not_http_response(self.server_state.default_headers))
        self.transport.close()
