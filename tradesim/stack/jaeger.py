"""Jaeger (the v2 binary, on the OpenTelemetry collector) as an optional stack component: with `tracing.enabled`
it receives the services' and jobs' spans over OTLP/HTTP, keeps them in memory and answers `tradesim trace`.

Built from its Go module at a pinned version. Its go.mod has `replace` directives, so `go install mod@version`
refuses it: the build runs inside a throwaway module of ours (`go get -tool`, then `go build`). Two `up`s started
together share one build through `provision_locked`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from tradesim.stack.component import Component, PortSpec, answers
from tradesim.stack.errors import ProvisionError
from tradesim.stack.tools import Report, go_version, run_tool

MODULE = "github.com/jaegertracing/jaeger"
PROGRAM = f"{MODULE}/cmd/jaeger"
OFF_HINT = "off: set tracing.enabled (TRADESIM_TRACING__ENABLED=true) and run `tradesim up`"
#: the go directive of Jaeger v1.76.0's go.mod (the build runs with GOTOOLCHAIN=local: no toolchain download)
MIN_GO = (1, 24, 6)


def go_too_old(version: tuple[int, ...] | None) -> str | None:
    """Why this Go cannot build Jaeger, or None."""
    if version is None or version >= MIN_GO:
        return None
    have, need = ".".join(map(str, version)), ".".join(map(str, MIN_GO))
    return f"Go {have} cannot build Jaeger (its module needs Go {need} or newer); install a newer Go"
STORE = "memstore"


class Jaeger(Component):
    name = "jaeger"
    builds_beside = True  # a Go build

    @property
    def external(self) -> bool:
        # an `otlp_url` left set while tracing is off asks for no Jaeger at all, external or not
        t = self.settings.tracing
        return t.enabled and t.external

    def ports(self) -> list[PortSpec]:
        t = self.settings.tracing
        return [PortSpec(t.host, t.otlp_port, "TRADESIM_TRACING__OTLP_PORT"),
                PortSpec(t.host, t.query_port, "TRADESIM_TRACING__QUERY_PORT"),
                PortSpec(t.host, t.query_grpc_port, "TRADESIM_TRACING__QUERY_GRPC_PORT"),
                PortSpec(t.host, t.metrics_port, "TRADESIM_TRACING__METRICS_PORT")]

    def address(self) -> str:
        t = self.settings.tracing
        # an external collector with no query API named: the local query port has nothing behind it
        return t.traces_url if self.external and t.query_url is None else t.client_query_url

    @property
    def build_dir(self) -> Path:
        t = self.settings.tracing
        return self.settings.cache_dir / "jaeger" / (t.version if t.optimized_build else f"{t.version}-unoptimized")

    @property
    def binary(self) -> Path:
        return self.build_dir / "jaeger"

    def version(self) -> str:
        return self.settings.tracing.version

    def not_requested(self) -> str | None:
        return None if self.settings.tracing.enabled else OFF_HINT

    def provision(self, report: Report) -> None:
        if self.binary.exists():
            return
        go = shutil.which("go")
        if go is None:
            raise ProvisionError(self.name, f"Go is not installed (`apt-get install -y golang`); Jaeger is built "
                                 f"from {PROGRAM}@{self.version()}")
        if (old := go_too_old(go_version(go))) is not None:
            raise ProvisionError(self.name, old)
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self._build(go, report)

    def _build(self, go: str, report: Report) -> None:
        module = self.build_dir / "module"
        shutil.rmtree(module, ignore_errors=True)
        module.mkdir()
        env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
        report(f"building Jaeger {self.version()} from its Go module (several minutes on a cold Go cache)")
        run_tool(self.name, [go, "mod", "init", "tradesim.local/jaeger-build"], "go mod init", cwd=module, env=env)
        run_tool(self.name, [go, "get", "-tool", f"{PROGRAM}@{self.version()}"], "go get -tool", cwd=module,
                 env=env, timeout_s=1800)
        partial = self.binary.with_name(f"jaeger.partial.{os.getpid()}")  # never a file another build writes
        # -N -l: no optimization, no inlining (the compiler's most expensive passes)
        flags = [] if self.settings.tracing.optimized_build else ["-gcflags=all=-N -l"]
        run_tool(self.name, [go, "build", "-trimpath", "-ldflags=-s -w", *flags, "-o", str(partial), PROGRAM],
                 "go build", cwd=module, env=env, timeout_s=2700)
        partial.rename(self.binary)  # only a finished build counts
        shutil.rmtree(module, ignore_errors=True)

    @property
    def config_path(self) -> Path:
        return self.dir / "jaeger.yaml"

    def config(self) -> dict[str, object]:
        """The collector pipeline OTLP/HTTP → batch → in-memory store, and the query API over that store; every
        listener on the configured host."""
        t = self.settings.tracing
        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                         "exporters": ["jaeger_storage_exporter"]}},
                "telemetry": {
                    "resource": {"service.name": "jaeger"},
                    "metrics": {"level": "basic", "readers": [{"pull": {"exporter": {"prometheus": {
                        "host": t.host, "port": t.metrics_port}}}}]},
                    "logs": {"level": "info"},
                },
            },
            "extensions": {
                "jaeger_query": {"storage": {"traces": STORE},
                                 "http": {"endpoint": f"{t.host}:{t.query_port}"},
                                 "grpc": {"endpoint": f"{t.host}:{t.query_grpc_port}"}},
                "jaeger_storage": {"backends": {STORE: {"memory": {"max_traces": t.max_traces}}}},
            },
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{t.host}:{t.otlp_port}"}}}},
            "processors": {"batch": {}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": STORE}},
        }

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def argv(self) -> list[str]:
        return [str(self.binary), "--config", str(self.config_path)]

    def check_health(self) -> None:
        if self.external and self.settings.tracing.query_url is None:
            # the OTLP/HTTP receiver takes only POSTs: a GET's refusal (405) is its answer
            answers(self.address(), "OTLP collector", any_status=True)
            return
        answers(f"{self.address()}/api/services", "Jaeger query API")
