"""The candle chart's layout: newest bars that fit, scaled to their range, the last price as a line."""

from __future__ import annotations

from decimal import Decimal

from tradesim.domain.events import Bar
from tradesim.tui.widgets.chart import DOWN, LAST, UP, layout


def bar(i: int, o: str, h: str, lo: str, c: str) -> Bar:
    return Bar(symbol="AAA", interval="1m", window_start_ms=i * 60_000, window_end_ms=(i + 1) * 60_000,
               open=Decimal(o), high=Decimal(h), low=Decimal(lo), close=Decimal(c), vwap=Decimal(c), volume=1,
               trade_count=1)


def plain(rows: list[list[tuple[str, str]]]) -> list[str]:
    return ["".join(ch for ch, _ in row) for row in rows]


def test_candles_wicks_and_colours() -> None:
    rows = layout([bar(0, "10", "12", "8", "11"), bar(1, "11", "11", "9", "9")], None, 12, 5)
    text = plain(rows)
    assert [r[0] for r in text] == ["│", "┃", "┃", "│", "│"]  # high 12 … low 8: wick, body 11..10, wick
    assert {s for ch, s in (rows[y][0] for y in range(5))} == {UP}
    assert [r[2] for r in text] == [" ", "┃", "┃", "┃", " "]  # two bars fit twice over: a gap between them
    assert rows[2][2][1] == DOWN
    assert text[0].endswith(" 12.00")
    assert text[-1].endswith(" 8.00")


def test_the_last_price_is_a_line_with_its_label() -> None:
    rows = layout([bar(0, "10", "12", "8", "11")], Decimal("9"), 14, 5)
    line = rows[3]
    assert "".join(ch for ch, _ in line).endswith("─  9.00")
    assert line[1] == ("─", LAST)
    assert line[0][0] == "│"


def test_only_the_newest_bars_that_fit_are_drawn() -> None:
    bars = [bar(i, str(10 + i), str(10 + i), str(10 + i), str(10 + i)) for i in range(50)]
    text = plain(layout(bars, None, 20, 4))
    assert text[0].endswith("59.00")
    assert text[-1].endswith("46.00")


def test_a_flat_market_and_no_bars() -> None:
    assert plain(layout([bar(0, "5", "5", "5", "5")], Decimal(5), 10, 3))[1].startswith("┃")
    assert plain(layout([], Decimal(5), 10, 3)) == [" " * 10] * 3
