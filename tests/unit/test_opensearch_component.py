"""The OpenSearch component's command line: loopback only, ports, paths and heap from settings."""

from __future__ import annotations

from tradesim.settings import Settings, load_settings
from tradesim.stack.opensearch import LAUNCHER, OpenSearch


def _settings(settings: Settings) -> Settings:
    return load_settings(home=settings.home, cache_dir=settings.cache_dir,
                         opensearch={"port": 19200, "transport_port": 19300, "heap_mb": 512})


def test_argv_runs_the_launcher_with_settings_from_configuration(settings: Settings) -> None:
    comp = OpenSearch(_settings(settings))
    argv = comp.argv()
    assert "-Xms512m" in argv
    assert "-Xmx512m" in argv
    assert argv[argv.index("-cp") + 1] == f"{comp.libs}/*"
    assert str(LAUNCHER) in argv
    assert LAUNCHER.is_file()  # shipped with the package, run by the single-file source launcher
    args = dict(a.split("=", 1) for a in argv[argv.index(str(LAUNCHER)) + 1:])
    assert args["network.host"] == "127.0.0.1"
    assert args["http.port"] == "19200"
    assert args["transport.port"] == "19300"
    assert args["discovery.type"] == "single-node"
    assert args["path.data"] == str(comp.dir / "data")


def test_ports_name_the_settings_that_move_them(settings: Settings) -> None:
    comp = OpenSearch(_settings(settings))
    assert {(p.port, p.setting) for p in comp.ports()} == {
        (19200, "TRADESIM_OPENSEARCH__PORT"), (19300, "TRADESIM_OPENSEARCH__TRANSPORT_PORT")}


def test_external_when_a_url_is_configured(settings: Settings) -> None:
    assert not OpenSearch(settings).external
    external = load_settings(home=settings.home, opensearch={"url": "http://search.example:9200"})
    comp = OpenSearch(external)
    assert comp.external
    assert comp.address() == "http://search.example:9200"
