"""A candle chart of one symbol's bars, one column per bar, with the last price as a line and a price axis."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual.widget import Widget

from tradesim.client.format import price as fmt_price
from tradesim.domain.events import Bar

UP, DOWN, LAST, AXIS = "green", "red", "bold yellow", "dim"
Cell = tuple[str, str]  # character, style


def layout(bars: list[Bar], last: Decimal | None, width: int, height: int) -> list[list[Cell]]:
    """The chart as rows of (char, style) cells: the newest bars that fit (a column each, two when few), scaled
    to their low..high (and the last price), wick `│`, body `┃` (green up, red down), the last price as a `─`
    line, the axis on the right."""
    labels = [fmt_price(str(p)) for b in bars for p in (b.high, b.low)] + ([fmt_price(str(last))] if last else [])
    axis = max((len(t) for t in labels), default=0) + 1
    plot_w = max(0, width - axis)
    shown = bars[-plot_w:] if plot_w else []
    step = 2 if 2 * len(shown) <= plot_w else 1  # few bars: a gap between candles
    rows: list[list[Cell]] = [[(" ", "")] * width for _ in range(height)]
    if height <= 0 or not shown:
        return rows
    prices = [p for b in shown for p in (b.high, b.low)] + ([last] if last is not None else [])
    hi, lo = max(prices), min(prices)
    if hi == lo:
        hi, lo = hi + hi / 1000, lo - lo / 1000  # a flat market still gets a visible band

    def row_of(p: Decimal) -> int:
        return min(height - 1, max(0, int((hi - p) / (hi - lo) * (height - 1) + Decimal("0.5"))))

    for i, b in enumerate(shown):
        x = i * step
        style = UP if b.close >= b.open else DOWN
        top, bottom = row_of(b.high), row_of(b.low)
        body_top, body_bottom = row_of(max(b.open, b.close)), row_of(min(b.open, b.close))
        for y in range(top, bottom + 1):
            rows[y][x] = ("┃" if body_top <= y <= body_bottom else "│", style)
    marks = {0: hi, height - 1: lo}
    if height > 4:
        marks[(height - 1) // 2] = (hi + lo) / 2
    for y, p in marks.items():
        _label(rows[y], plot_w, fmt_price(str(p)), AXIS)
    if last is not None:
        y = row_of(last)
        for x in range(plot_w):
            if rows[y][x][0] == " ":
                rows[y][x] = ("─", LAST)
        _label(rows[y], plot_w, fmt_price(str(last)), "reverse " + LAST)
    return rows


def _label(row: list[Cell], at: int, text: str, style: str) -> None:
    """Right-aligned in the axis (from column `at` to the end of the row)."""
    width = len(row) - at
    for i, ch in enumerate((" " + text).rjust(width)[-width:] if width > 0 else ""):
        row[at + i] = (ch, style)


def render_text(rows: list[list[Cell]]) -> Text:
    out = Text(no_wrap=True, overflow="crop")
    for i, row in enumerate(rows):
        if i:
            out.append("\n")
        run, style = "", None
        for ch, st in row:
            if st != style and run:
                out.append(run, style or None)
                run = ""
            style = st
            run += ch
        if run:
            out.append(run, style or None)
    return out


class CandleChart(Widget):
    """The selected symbol's candles; `show` sets what to draw, the widget scales it to its size."""

    DEFAULT_CSS = """
    CandleChart { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's parameter name
        super().__init__(id=id)
        self.bars: list[Bar] = []
        self.last: Decimal | None = None
        self.note = "no symbol selected"

    def show(self, bars: list[Bar], last: Decimal | None, note: str) -> None:
        self.bars, self.last, self.note = bars, last, note
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if not self.bars:
            text = self.note + (f"\nlast {fmt_price(str(self.last))}" if self.last is not None else "")
            return Text(text, style="dim", justify="center")
        return render_text(layout(self.bars, self.last, width, height))
