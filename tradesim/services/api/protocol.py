"""The API's HTTP protocol: uvicorn's own (httptools, else h11), except that bytes which are not a valid HTTP
request (a request line or headers the parser refuses: a line of 64 KiB and more, a stray byte) are answered
with the API's JSON problem body, not uvicorn's plain text, so every 4xx a client gets is JSON."""

from __future__ import annotations

import json

from uvicorn.protocols.http.auto import AutoHTTPProtocol

NOT_HTTP_MESSAGE = ("not a valid HTTP/1.1 request (the request line or a header could not be parsed, or is too "
                    "long: keep a URL and each header well under 64 KiB)")


def not_http_response(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole 400 answer, with the server's default headers (date, server); the connection closes after it."""
    body = json.dumps({"code": "bad_request", "message": NOT_HTTP_MESSAGE, "request_id": None}).encode()
    head = [b"HTTP/1.1 400 Bad Request", *(name + b": " + value for name, value in default_headers),
            b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class JsonErrorsHttpProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's protocol with a JSON body for a request it cannot parse (its `send_400_response`)."""

    def send_400_response(self, msg: str) -> None:
        self.transport.write(not_http_response(self.server_state.default_headers))
        self.transport.close()
