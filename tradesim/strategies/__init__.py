"""Strategies: Python classes a scenario names (`strategy: {class: ...}`) that trade through the public API while
the runner feeds them the scenario's ticks, bars and fills. Write one against `tradesim.strategies.sdk`."""

from tradesim.strategies.sdk import (
    ApiContext,
    Context,
    Driver,
    OpenOrder,
    OrderRefused,
    Strategy,
    StrategyError,
    StrategyParams,
    load_strategy,
    parse_params,
)

__all__ = ["ApiContext", "Context", "Driver", "OpenOrder", "OrderRefused", "Strategy", "StrategyError",
           "StrategyParams", "load_strategy", "parse_params"]
