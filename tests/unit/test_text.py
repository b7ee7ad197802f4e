"""Messages on one line, whatever the value or exception quoted in them does."""

from __future__ import annotations

from tradesim.text import error_line, one_line


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_a_message_is_one_line_and_an_unprintable_exception_is_named() -> None:
    assert one_line("a\n b\t\rc  ") == "a b c"
    assert error_line(ValueError("bad\nvalue")) == "bad value"
    assert error_line(KeyError()) == "KeyError"
    assert error_line(Unprintable()) == "Unprintable"  # before: str() raised inside the error path: a traceback
