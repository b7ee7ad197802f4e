"""The jobs `tradesim jobs submit` knows: name → module and arguments. No PyFlink import here (the CLI uses it)."""

from __future__ import annotations

from dataclasses import dataclass

from tradesim.settings import Settings

JOB_NAME_PREFIX = "tradesim-"


@dataclass(frozen=True)
class JobSpec:
    name: str
    module: str
    description: str
    #: submitted by `tradesim up --with-jobs`
    standard: bool

    @property
    def flink_name(self) -> str:
        """The job name on the cluster; `jobs list` maps it back to `name`."""
        return JOB_NAME_PREFIX + self.name


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec("bars", "tradesim.jobs.bars", "1 s and 1 min OHLCV bars: market_data → market_bars", True),
        JobSpec("execution", "tradesim.jobs.execution",
                "match orders against prices, settle on portfolios: trade_orders + market_data → trade_executed",
                True),
        JobSpec("passthrough", "tradesim.jobs.passthrough",
                "benchmark baseline: copy market_data to market_data_copy in Flink SQL", False),
    )
}


def job_args(spec: JobSpec, settings: Settings, overrides: dict[str, str] | None = None) -> list[str]:
    """Program arguments of a job, from settings (every endpoint and topic is a setting)."""
    t, f = settings.topics, settings.flink
    args: dict[str, str] = {"bootstrap": settings.kafka.bootstrap, "job-name": spec.flink_name,
                            "checkpoint-interval-ms": str(f.checkpoint_interval_ms)}
    if spec.name == "bars":
        args |= {"source-topic": t.market_data, "bars-topic": t.market_bars, "dead-letter-topic": t.dead_letter,
                 "group-id": "tradesim-bars", "out-of-orderness-ms": str(f.out_of_orderness_ms)}
    elif spec.name == "execution":
        args |= {"orders-topic": t.trade_orders, "market-topic": t.market_data, "executed-topic": t.trade_executed,
                 "dead-letter-topic": t.dead_letter, "group-id": "tradesim-execution",
                 "processing-deadline-s": str(settings.trading.processing_deadline_s)}
    elif spec.name == "passthrough":
        args |= {"source-topic": t.market_data, "sink-topic": t.market_data + "_copy",
                 "group-id": "tradesim-passthrough"}
    args |= overrides or {}
    return [part for k, v in args.items() for part in (f"--{k}", v)]


def name_of(flink_job_name: str) -> str:
    """Catalog name of a cluster job ('tradesim-bars' → 'bars'); foreign jobs keep their own name."""
    return flink_job_name.removeprefix(JOB_NAME_PREFIX)
