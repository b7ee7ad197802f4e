"""With chaos on, the services and jobs reach the local Redis, DynamoDB and Kafka through Toxiproxy; the stack's
own view (and any external endpoint) stays direct. Kafka gets a second listener that advertises the proxy."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

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
    assert (r.kafka.bootstrap, s.kafka.bootstrap) == ("127.0.0.1:19092", "127.0.0.1:9092")


def test_kafka_has_a_listener_that_advertises_the_proxy_only_with_chaos_on(tmp_path: Path) -> None:
    from tradesim.stack.kafka import Kafka

    def listeners(enabled: bool) -> dict[str, str]:
        s = Settings(home=tmp_path, chaos={"enabled": enabled})  # type: ignore[arg-type]
        props = dict(line.split("=", 1) for line in Kafka(s)._server_properties().splitlines() if "=" in line)
        return {k: props[k] for k in ("listeners", "advertised.listeners")}

    assert listeners(True) == {
        "listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,PROXIED://127.0.0.1:9094",
        "advertised.listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,PROXIED://127.0.0.1:19092"}
    assert "PROXIED" not in listeners(False)["listeners"]


def test_external_endpoints_are_never_proxied() -> None:
    s = Settings(chaos={"enabled": True}, redis={"url": "redis://cache.example:6379/0"},  # type: ignore[arg-type]
                 dynamodb={"endpoint_url": "https://dynamodb.example"},  # type: ignore[arg-type]
                 kafka={"bootstrap_servers": "b1.example:9092,b2.example:9092"})  # type: ignore[arg-type]
    r = s.routed()
    assert (r.redis.client_url, r.dynamodb.endpoint) == ("redis://cache.example:6379/0", "https://dynamodb.example")
    assert r.kafka.bootstrap == "b1.example:9092,b2.example:9092"


def test_services_and_the_taskmanager_get_the_routed_settings_the_exporter_does_not() -> None:
    s = Settings(chaos={"enabled": True})  # type: ignore[arg-type]
    comps = {c.name: c for c in registry.build(s)}
    assert comps["api"].env()["TRADESIM_REDIS__PORT"] == "16379"
    assert comps["marketdata"].env()["TRADESIM_DYNAMODB__PORT"] == "18000"
    assert comps["api"].env()["TRADESIM_KAFKA__PORT"] == "19092"
    assert comps["exporter"].env()["TRADESIM_REDIS__PORT"] == "6379"


def test_every_fault_names_its_target_and_kind() -> None:
    assert {f.name for f in FAULTS.values()} == {f"{t}-{k}" for t in ("redis", "dynamodb", "kafka")
                                                  for k in ("latency", "bandwidth", "reset", "timeout", "down")}


def test_toxiproxy_starts_with_its_proxies_from_a_file(tmp_path: Path) -> None:
    """A probe: with chaos on, the services started once Toxiproxy answered, but its proxies came only with
    `initialize` after every start: hundreds of refused connections in their logs. The server now reads them at
    start, before it answers (checked by hand against the pinned server: "Populated proxies from file" comes
    before "Starting HTTP server")."""
    import json

    from tradesim.stack.toxiproxy import ToxiproxyServer

    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache", chaos={"enabled": True})
    server = ToxiproxyServer(settings)
    server.configure()
    argv = server.argv()
    assert argv[argv.index("-config") + 1] == str(server.config_path)
    written = json.loads(server.config_path.read_text())
    assert [(p["name"], p["listen"], p["upstream"], p["enabled"]) for p in written] == [
        (name, listen, upstream, True) for name, listen, upstream in server.proxies()]
    assert {p["upstream"] for p in written} == {f"{settings.redis.host}:{settings.redis.port}",
                                               f"{settings.dynamodb.host}:{settings.dynamodb.port}",
                                               f"{settings.kafka.host}:{settings.kafka.proxied_port}"}


GO_STUB = """#!/bin/sh
echo "$@" >> "{log}"
mkdir -p "$GOBIN"
# `go install` copies the binary into GOBIN in place; the first one is cut short (killed) mid-copy
if [ -e "{cut}" ]; then printf 'ELF' > "$GOBIN/server"; exit 0; fi
: > "{cut}"
printf 'ELF half' > "$GOBIN/server"
exit 137
"""


def test_a_toxiproxy_install_cut_short_is_not_taken_for_a_finished_one(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: `go install` writes the binary where it will run (a copy out of Go's build cache), so one killed
    mid-copy (an `up` that failed beside the build, the timeout) left a truncated `server` that every later `up`
    took for a finished build, and that could not run."""
    from tradesim.stack.errors import ProvisionError
    from tradesim.stack.toxiproxy import ToxiproxyServer

    log, bin_dir = tmp_path / "go.log", tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(GO_STUB.format(log=log, cut=tmp_path / "cut-once"))
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    tox = ToxiproxyServer(Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache",
                                   chaos={"enabled": True}))  # type: ignore[arg-type]
    with pytest.raises(ProvisionError, match="go install"):
        tox.provision(lambda _msg: None)
    assert not tox.binary.exists()
    tox.provision(lambda _msg: None)  # installs again
    assert len(log.read_text().splitlines()) == 2
    assert tox.binary.read_text() == "ELF"
    assert [p.name for p in tox.binary.parent.iterdir()] == ["server"]
