"""Long-running processes (market data, order API); each runnable alone with `python -m`."""
