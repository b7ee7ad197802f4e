"""With chaos on, the services and jobs reach the local Redis and DynamoDB through Toxiproxy; the stack's own
view (and any external endpoint) stays direct."""

from __future__ import annotations

from tradesim.settings import Settings
from tradesim.stack import registry
from tradesim.stack.chaos import FAULTS


def test_off_routes_nothing() -> None:
    s = Settings(chaos={"enabled": False})  # type: ignore[arg-type]  # (the integration session turns it on)
    assert s.routed() is s


def test_on_routes_the_local_redis_and_dynamodb_through_the_proxies() -> None:
    s = Settings(chaos={"enabled": True, "redis_port": 16001, "dynamodb_port": 16002})  # type: ignore[arg-type]
    r = s.routed()
    assert r.redis.client_url == "redis://127.0.0.1:16001/0"
    assert r.dynamodb.endpoint == "http://127.0.0.1:16002"
    assert r.redis.url is None  # still the local servers (their credentials, their rules)
    assert not r.dynamodb.external
    assert (s.redis.client_url, s.dynamodb.endpoint) == ("redis://127.0.0.1:6379/0", "http://127.0.0.1:8000")


def test_external_endpoints_are_never_proxied() -> None:
    s = Settings(chaos={"enabled": True}, redis={"url": "redis://cache.example:6379/0"},  # type: ignore[arg-type]
                 dynamodb={"endpoint_url": "https://dynamodb.example"})  # type: ignore[arg-type]
    r = s.routed()
    assert (r.redis.client_url, r.dynamodb.endpoint) == ("redis://cache.example:6379/0", "https://dynamodb.example")


def test_services_and_the_taskmanager_get_the_routed_settings_the_exporter_does_not() -> None:
    s = Settings(chaos={"enabled": True})  # type: ignore[arg-type]
    comps = {c.name: c for c in registry.build(s)}
    assert comps["api"].env()["TRADESIM_REDIS__PORT"] == "16379"
    assert comps["marketdata"].env()["TRADESIM_DYNAMODB__PORT"] == "18000"
    assert comps["exporter"].env()["TRADESIM_REDIS__PORT"] == "6379"


def test_every_fault_names_its_target_and_kind() -> None:
    assert {f.name for f in FAULTS.values()} == {f"{t}-{k}" for t in ("redis", "dynamodb")
                                                  for k in ("latency", "bandwidth", "reset", "timeout", "down")}
