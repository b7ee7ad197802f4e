"""Shared test factories and fakes (a fake may stand in only for pure unit tests, never on a data path)."""
