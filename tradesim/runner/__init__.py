"""Scripted scenario runs on the real stack: `tradesim run` and `tradesim smoke` (see engine.py)."""
