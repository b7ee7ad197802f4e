"""The lean DynamoDB client signs exactly like botocore (so it runs against real AWS) and maps faults like it."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from tradesim.adapters.dynamodb import wire
from tradesim.adapters.dynamodb.wire import WireClient
from tradesim.testing.net import free_port

FIXED = time.struct_time((2026, 11, 25, 12, 34, 56, 2, 329, 0))


@pytest.mark.parametrize("token", [None, "session-token"])
def test_signature_matches_botocore_sigv4(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    monkeypatch.setattr(wire.time, "gmtime", lambda *_: FIXED)
    client = WireClient("https://dynamodb.eu-west-1.amazonaws.com", "eu-west-1", lambda: ("AKID", "SECRET", token),
                        timeout_s=1, max_attempts=1)
    body = b'{"TableName":"portfolios","Key":{"user_id":{"S":"u1"}}}'
    mine = client._sign("GetItem", body)

    request = AWSRequest(method="POST", url="https://dynamodb.eu-west-1.amazonaws.com/", data=body,
                         headers={k: v for k, v in mine.items() if k != "Authorization"})
    request.context["timestamp"] = "20261125T123456Z"
    auth = SigV4Auth(Credentials("AKID", "SECRET", token), "dynamodb", "eu-west-1")
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    assert mine["Authorization"].endswith(f"Signature={expected}")
    assert "Credential=AKID/20261125/eu-west-1/dynamodb/aws4_request" in mine["Authorization"]


def test_snake_case_calls_name_the_operation() -> None:
    assert wire._operation("update_item") == "UpdateItem"
    assert wire._operation("batch_write_item") == "BatchWriteItem"


def test_nothing_listening_is_an_endpoint_connection_error() -> None:
    client = WireClient(f"http://127.0.0.1:{free_port()}", "us-east-1", lambda: ("a", "b", None),
                        timeout_s=1, max_attempts=2)
    with pytest.raises(EndpointConnectionError):
        client.get_item(TableName="t", Key={"k": {"S": "v"}})


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        client = WireClient(f"http://127.0.0.1:{silent.getsockname()[1]}", "us-east-1", lambda: ("a", "b", None),
                            timeout_s=0.3, max_attempts=1)
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            client.get_item(TableName="t", Key={"k": {"S": "v"}})
        assert time.monotonic() - started < 2
        client.close()


def test_service_errors_become_client_errors_with_the_service_code() -> None:
    # a one-shot HTTP server answering like DynamoDB does to a failed condition
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = WireClient(f"http://127.0.0.1:{server.getsockname()[1]}", "us-east-1", lambda: ("a", "b", None),
                            timeout_s=2, max_attempts=1)
        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                body = (b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",'
                        b'"message":"The conditional request failed"}')
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

        t = threading.Thread(target=answer)
        t.start()
        with pytest.raises(ClientError) as info:
            client.update_item(TableName="t", Key={"k": {"S": "v"}}, UpdateExpression="SET a = :a")
        t.join()
        client.close()
    assert info.value.response["Error"] == {"Code": "ConditionalCheckFailedException",
                                            "Message": "The conditional request failed"}


def test_the_client_setting_chooses_the_wire_client_or_boto3() -> None:
    from tradesim.adapters.dynamodb.client import make_client
    from tradesim.settings import DynamoDBSettings

    assert isinstance(make_client(DynamoDBSettings()), WireClient)
    sdk = make_client(DynamoDBSettings(client="boto3"))
    assert sdk.meta.service_model.service_name == "dynamodb"


@pytest.mark.parametrize(("region", "endpoint"), [
    ("us-east-1", "https://dynamodb.us-east-1.amazonaws.com"),
    ("cn-north-1", "https://dynamodb.cn-north-1.amazonaws.com.cn"),
    ("eusc-de-east-1", "https://dynamodb.eusc-de-east-1.amazonaws.eu"),
])
def test_on_aws_the_wire_client_goes_where_boto3_goes_in_every_partition(
        region: str, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: with dynamodb.use_aws (as `infra synth` sets it, whose --region takes China's and the European
    Sovereign Cloud's) the wire client sent every call to dynamodb.<region>.amazonaws.com, a host those regions
    do not have: their partitions have domains of their own."""
    from tradesim.adapters.dynamodb.client import make_client
    from tradesim.settings import DynamoDBSettings

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_USE_FIPS_ENDPOINT",
                 "AWS_USE_DUALSTACK_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)  # this machine's choices of endpoint are not the test's
    client = make_client(DynamoDBSettings(use_aws=True, region=region))
    assert isinstance(client, WireClient)
    assert client.endpoint == endpoint
