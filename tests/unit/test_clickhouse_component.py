"""The generated ClickHouse config: own ports and folder, loopback only, small caches, hashed password."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import SecretStr

from tradesim.settings import Settings
from tradesim.stack import clickhouse as ch_module
from tradesim.stack.clickhouse import ClickHouse
from tradesim.stack.errors import ProvisionError


@pytest.fixture
def component(settings: Settings) -> ClickHouse:
    s = settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(
        update={"http_port": 18123, "tcp_port": 19000, "password": SecretStr("s3cret")})})
    return ClickHouse(s)


def test_config_is_complete_and_local(component: ClickHouse) -> None:
    component.configure()
    root = ET.parse(component.config_path).getroot()  # noqa: S314 - parsing our own generated file
    text = {child.tag: (child.text or "") for child in root}
    assert text["listen_host"] == "127.0.0.1"
    assert (text["http_port"], text["tcp_port"]) == ("18123", "19000")
    assert "interserver_http_port" not in text
    for key in ("path", "tmp_path", "user_files_path", "format_schema_path", "users_config"):
        assert Path(text[key]).is_relative_to(component.dir), key
        if key != "users_config":
            assert Path(text[key]).is_dir()
    # marks are weighed without their ~230 bytes of bookkeeping: a bound by bytes must be small (see the module),
    # and 18.16 enforces it only on entries older than the profile's mark_cache_min_lifetime
    assert int(text["mark_cache_size"]) <= 1024 * 1024
    users = ET.parse(component.dir / "users.xml").getroot()  # noqa: S314 - our own generated file
    assert int(users.findtext("profiles/default/mark_cache_min_lifetime") or 10_000) <= 300
    assert root.find("logger/console").text == "1"  # type: ignore[union-attr]
    assert root.find("logger/log") is None  # no log file outside the folder


def test_users_are_loopback_only_with_hashed_password(component: ClickHouse) -> None:
    component.configure()
    users_path = component.dir / "users.xml"
    assert "s3cret" not in users_path.read_text()
    assert users_path.stat().st_mode & 0o077 == 0
    user = ET.parse(users_path).getroot().find("users/default")  # noqa: S314 - our own generated file
    assert user is not None
    assert user.findtext("password_sha256_hex") == hashlib.sha256(b"s3cret").hexdigest()
    assert sorted(ip.text or "" for ip in user.findall("networks/ip")) == ["127.0.0.1", "::1"]


def test_argv_runs_the_server_in_the_foreground(component: ClickHouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ch_module, "server_argv", lambda: ["/usr/sbin/clickhouse-server"])
    assert component.argv() == ["/usr/sbin/clickhouse-server", f"--config-file={component.config_path}"]
    monkeypatch.setattr(ch_module, "server_argv", lambda: ["/usr/bin/clickhouse", "server"])
    assert component.argv()[:2] == ["/usr/bin/clickhouse", "server"]


def test_missing_binary_is_installed_with_apt(component: ClickHouse, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(ch_module, "server_argv", lambda: None)
    monkeypatch.setattr(ch_module, "apt_install", lambda name, pkgs, report: calls.append(pkgs))
    monkeypatch.setattr(ch_module, "stop_packaged_service", lambda service, report: None)
    component.provision(lambda _: None)
    assert calls == [["clickhouse-server", "clickhouse-client"]]
    with pytest.raises(ProvisionError, match="apt-get install -y clickhouse-server clickhouse-client"):
        component.argv()


def test_present_binary_is_not_reinstalled(component: ClickHouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ch_module, "server_argv", lambda: ["/usr/sbin/clickhouse-server"])
    monkeypatch.setattr(ch_module, "apt_install", lambda *a: pytest.fail("must not install"))
    component.provision(lambda _: None)


def test_external_when_url_is_set(settings: Settings) -> None:
    s = settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(
        update={"url": "http://ch.example:8123"})})
    assert ClickHouse(s).external
    assert not ClickHouse(settings).external


@pytest.mark.parametrize(("binary", "tuned"), [("/usr/sbin/clickhouse-server", True), ("/opt/bin/clickhouse", False)])
def test_the_allocator_is_tuned_only_for_debians_server(component: ClickHouse, monkeypatch: pytest.MonkeyPatch,
                                                        binary: str, tuned: bool) -> None:
    monkeypatch.setattr(ch_module.shutil, "which",
                        lambda name, path=None: binary if Path(binary).name == name else None)
    assert (component.env().get("MALLOC_CONF") == ch_module.JEMALLOC_CONF) is tuned


def test_a_url_with_credentials_is_probed_at_its_host(settings: Settings) -> None:
    """Before: urllib took `u:pw@127.0.0.1` for the host name ("Name or service not known"), so an external server
    named with credentials in its URL never looked healthy. Nothing listens on the port here."""
    from tradesim.stack.component import Unhealthy
    from tradesim.testing.net import free_port

    port = free_port()
    external = settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(
        update={"url": f"http://u:hunter2@127.0.0.1:{port}"})})
    assert external.clickhouse.server == ("http", "127.0.0.1", port)
    with pytest.raises(Unhealthy) as caught:
        ClickHouse(external).check_health()
    assert "refused" in str(caught.value)
    assert "hunter2" not in str(caught.value)
