"""Benchmarks, run through `tradesim bench ...`; each prints its figures and the command to reproduce them."""
