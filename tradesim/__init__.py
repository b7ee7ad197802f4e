"""tradesim: a trading simulator on a real streaming stack."""

__version__ = "0.1.0"
