"""The client side of tradesim's public services (the order API, the market-data WebSocket) and how their values
are shown: one home for the CLI, the TUI and scripted runs."""
