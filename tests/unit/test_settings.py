from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import get_args

import pytest
from annotated_types import Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tradesim.settings import SettingsFileError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("TRADESIM_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_bind_loopback_on_usual_ports() -> None:
    s = load_settings()
    assert (s.kafka.host, s.kafka.port, s.kafka.controller_port) == ("127.0.0.1", 9092, 9093)
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.redis.client_url == "redis://127.0.0.1:6379/0"


def test_env_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_KAFKA__PORT", "19092")
    monkeypatch.setenv("TRADESIM_REDIS__PERSISTENCE", "none")
    s = load_settings()
    assert s.kafka.port == 19092
    assert s.kafka.bootstrap == "127.0.0.1:19092"
    assert s.redis.persistence == "none"


def test_toml_file_and_env_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "tradesim.toml").write_text('[kafka]\nport = 29092\npartitions = 3\n[redis]\nport = 16379\n')
    monkeypatch.setenv("TRADESIM_REDIS__PORT", "26379")
    s = load_settings()
    assert s.kafka.port == 29092
    assert s.kafka.partitions == 3
    assert s.redis.port == 26379  # env wins over the file


def test_toml_path_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("[kafka]\nport = 39092\n")
    monkeypatch.setenv("TRADESIM_CONFIG", str(cfg))
    assert load_settings().kafka.port == 39092


def test_external_endpoints_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_KAFKA__BOOTSTRAP_SERVERS", "kafka-1.example:9092,kafka-2.example:9092")
    monkeypatch.setenv("TRADESIM_REDIS__URL", "redis://cache.example:6380/1")
    s = load_settings()
    assert s.kafka.bootstrap == "kafka-1.example:9092,kafka-2.example:9092"
    assert s.redis.client_url == "redis://cache.example:6380/1"


@pytest.mark.parametrize(("var", "value"), [
    ("TRADESIM_KAFKA__PORT", "99999"),
    ("TRADESIM_KAFKA__PORT", "abc"),
    ("TRADESIM_REDIS__PERSISTENCE", "sometimes"),
    # before: each was accepted, and the command blamed the server (exit 1) or gave a traceback
    ("TRADESIM_API__PORT", "1.0"),
    ("TRADESIM_API__PORT", "true"),
    ("TRADESIM_API__HOST", ""),
    ("TRADESIM_API__HOST", "a b"),
    ("TRADESIM_API__HOST", "a\nb"),
    ("TRADESIM_KAFKA__HOST", "::1"),
    ("TRADESIM_API__URL", "http://h:0"),
    ("TRADESIM_API__URL", "http://a b:80"),
    ("TRADESIM_FLINK__VERSION", "/some/dir"),  # a version becomes a folder name: provisioning removed /some/dir/venv
])
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        load_settings()


@pytest.mark.parametrize("line", ["port = true", "port = 8080.0"])
def test_a_port_in_toml_is_digits(tmp_path: Path, line: str) -> None:
    (tmp_path / "tradesim.toml").write_text(f"[api]\n{line}\n")
    with pytest.raises(ValidationError, match="whole number"):
        load_settings()


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "tradesim.toml").write_text("[kafka]\nprot = 1\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings()


def test_home_is_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_HOME", "relative/dir")
    s = load_settings()
    assert s.home.is_absolute()
    assert s.stack_dir == s.home / "stack"


def test_a_watchlist_holds_symbols(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_TUI__WATCHLIST", '["aapl", "brk.b"]')
    assert load_settings().tui.watchlist == ["AAPL", "BRK.B"]
    monkeypatch.setenv("TRADESIM_TUI__WATCHLIST", '["AAPL", "BRK/B"]')
    with pytest.raises(ValidationError, match="not symbols: 'BRK/B'"):  # the feed would refuse it
        load_settings()


@pytest.mark.parametrize("key", ["clé", "tab\there"])
def test_an_admin_key_travels_in_a_header(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("TRADESIM_API__ADMIN_KEY", key)
    with pytest.raises(ValidationError, match="printable ASCII"):
        load_settings()


@pytest.mark.parametrize(("name", "hint"), [
    ("TRADESIM_KAFKA_PORT", "TRADESIM_KAFKA__PORT, with `__`"),  # one `_` where `__` nests: would be ignored
    ("TRADESIM_PORTT", "Settings section"),
    ("tradesim_chaos_enabled", "TRADESIM_CHAOS__ENABLED"),
    ("TRADESIM_STACK_DIR", "Settings section"),  # `stack` has no `dir`: no made-up nested name
    ("tradesim_config", "only as TRADESIM_CONFIG"),  # config_path() reads the capitals alone
])
def test_an_unknown_variable_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, hint: str) -> None:
    monkeypatch.setenv(name, "19092")
    with pytest.raises(SettingsFileError, match=f"^{name}: not a tradesim setting") as err:
        load_settings()
    assert hint in str(err.value)


def test_known_variables_in_any_case_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("tradesim_kafka__port", "19092")
    monkeypatch.setenv("TRADESIM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRADESIM_CONFIG", str(tmp_path / "t.toml"))
    (tmp_path / "t.toml").write_text("")
    s = load_settings()
    assert (s.kafka.port, s.cache_dir) == (19092, tmp_path)


def test_an_empty_admin_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker/compose.yaml passes `TRADESIM_API__ADMIN_KEY` empty when the user set none: the API then uses its
    key file. A key with a space cannot travel in a header and is refused."""
    monkeypatch.setenv("TRADESIM_API__ADMIN_KEY", "")
    key = load_settings().api.admin_key
    assert key is not None
    assert key.get_secret_value() == ""
    monkeypatch.setenv("TRADESIM_API__ADMIN_KEY", "a b")
    with pytest.raises(ValidationError, match="without spaces"):
        load_settings()


def _numbers(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _numbers(kind, f"{prefix}{name}.")
        elif {int, float, Decimal} & set(get_args(kind) or (kind,)):
            yield f"{prefix}{name}", info


def test_every_number_setting_has_an_upper_bound() -> None:
    """A review found `TRADESIM_API__KAFKA_TIMEOUT_S=inf` (and 1e300) accepted, then an OverflowError traceback
    where the value met a socket; a fee of 1e30 made every order's fee a decimal.InvalidOperation. A number a
    later section adds without a bound fails here."""
    from tradesim.settings import Settings

    unbounded = [name for name, info in _numbers(Settings) if not name.endswith(("port", "slippage_seed"))
                 and not any(isinstance(m, Le | Lt) for m in info.metadata)]
    assert unbounded == []


@pytest.mark.parametrize(("var", "value"), [
    ("TRADESIM_API__KAFKA_TIMEOUT_S", "inf"), ("TRADESIM_API__KAFKA_TIMEOUT_S", "nan"),
    ("TRADESIM_API__KAFKA_TIMEOUT_S", "1e300"), ("TRADESIM_TRADING__FEE_MINIMUM", "1e30"),
    ("TRADESIM_TRADING__FEE_BPS", "Infinity"), ("TRADESIM_TRACING__MAX_PER_S", "inf"),
    ("TRADESIM_KAFKA__HEAP_MB", "99999999999")])
def test_an_infinite_or_huge_number_is_refused(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        load_settings()


def test_a_config_file_with_a_byte_order_mark_says_so(tmp_path: Path) -> None:
    """A review: TOML's parser called it "Invalid statement (at line 1, column 1)"."""
    (tmp_path / "tradesim.toml").write_bytes(b"\xef\xbb\xbf[kafka]\nport = 1\n")
    with pytest.raises(SettingsFileError, match="starts with a byte-order mark"):
        load_settings()


def test_a_home_whose_name_is_too_long_is_named_as_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: it was blamed on tradesim.toml ("cannot read it: File name too long"), with no such file."""
    monkeypatch.setenv("TRADESIM_HOME", "/tmp/" + "a" * 300)
    with pytest.raises(ValidationError, match="cannot use it as a folder: File name too long"):
        load_settings()


def test_a_relative_config_file_reaches_the_processes_the_stack_starts(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    """Before: a service (and the watchdog, and Flink's TaskManager) starts in a folder of its own, where the
    relative TRADESIM_CONFIG the CLI was given named no file: each refused to start ("no such file")."""
    from tradesim.stack import registry

    (tmp_path / "dev.toml").write_text("[kafka]\nport = 39092\n")
    monkeypatch.setenv("TRADESIM_CONFIG", "dev.toml")
    settings = load_settings(home=tmp_path / "home")
    api = next(c for c in registry.build(settings) if c.name == "api")
    env = api.env()
    (tmp_path / "stack").mkdir()
    monkeypatch.chdir(tmp_path / "stack")  # where the service starts
    for name, value in env.items():
        if name.startswith("TRADESIM_"):
            monkeypatch.setenv(name, value)
    assert load_settings().kafka.port == 39092
