"""`tradesim trace ORDER_ID`: an order's spans from Jaeger, as a tree with timings."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Annotated

import typer
from rich.text import Text
from rich.tree import Tree

from tradesim.adapters.tracing.jaeger import JaegerQuery, Span, Trace
from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import console, order_id_param
from tradesim.ports import Unavailable
from tradesim.settings import load_settings
from tradesim.stack.errors import StackError, UserError

out = console()
#: attributes worth a glance on a span's line (the rest are in --json)
SHOWN = ("status", "trigger", "batch", "symbol")


def register(app: typer.Typer) -> None:
    app.command("trace")(trace_cmd)


def trace_cmd(
    order_id: Annotated[str, typer.Argument(help="The order id POST /orders answered.")],
    wait: Annotated[float, typer.Option(help="Seconds to keep asking while no trace is found yet (spans reach "
                                        "Jaeger within a second or two of each step).", min=0, max=600)] = 0.0,
    json_: Annotated[bool, typer.Option("--json", help="The spans as JSON, for scripts.")] = False,
) -> None:
    """The order's path as spans: API request → Kafka → match and settle in the execution job → the read side's
    writes, with each span's start offset and duration. Exit 1 when Jaeger has no trace of it."""
    _trace(order_id, wait, json_)


@cli_errors
def _trace(order_id: str, wait: float, json_: bool) -> None:
    order_id_param(order_id)
    t = load_settings().tracing
    if not t.enabled and t.query_url is None:
        raise UserError("tracing is off: set tracing.enabled (TRADESIM_TRACING__ENABLED=true) and run `tradesim up`")
    query = JaegerQuery(t.client_query_url)
    deadline = time.monotonic() + wait
    try:
        while not (traces := query.order_traces(order_id)) and time.monotonic() < deadline:
            time.sleep(0.5)
    except Unavailable as exc:
        raise StackError(f"{exc}; start it with `tradesim up` (tracing.enabled) or set tracing.query_url") from None
    finally:
        query.close()
    if json_:
        out.print_json(json.dumps([asdict(tr) for tr in traces]))
    elif not traces:
        cap = f", at most {t.max_per_s:g} a second" if t.max_per_s else ""
        out.print(f"no trace of order {order_id}: it was not sampled (tracing.sample_ratio {t.sample_ratio:g}{cap}), "
                  "is older than Jaeger keeps, or its spans have not arrived yet (try --wait 5)")
    for tr in [] if json_ else traces:
        out.print(_tree(tr), width=max(out.width, 160))  # a pipe gets 80 columns, too few for a tree
    if not traces:
        raise typer.Exit(1)


def _tree(tr: Trace) -> Tree:
    start = tr.start_us
    end = tr.end_us
    tree = Tree(Text.assemble((f"trace {tr.trace_id}", "bold"),
                              f"  {tr.spans} spans over {(end - start) / 1000:.1f} ms"))

    def add(node: Tree, span: Span) -> None:
        shown = " ".join(f"{k}={span.attributes[k]}" for k in SHOWN if k in span.attributes)
        label = Text.assemble(span.operation, "  ", (span.service, "dim"),
                              f"  +{(span.start_us - start) / 1000:.1f} ms  ",
                              (f"{span.duration_us / 1000:.1f} ms", "bold"), ("  " + shown if shown else "", "dim"))
        child = node.add(label)
        for c in span.children:
            add(child, c)

    for root in tr.roots:
        add(tree, root)
    return tree
