"""The execution job's graph as Flink runs it."""

from __future__ import annotations

from tradesim.settings import Settings
from tradesim.stack.flink import Flink

from .conftest import running, wait_for

#: the vertex ids Flink derived for the job's chains when this test was written; each chain begins with an
#: operator that holds state (offsets, books, queued decisions, pending mirror writes, the sink's writer)
VERTEX_IDS = {
    "trade_orders": "cbc357ccb763df2852fee8c4fc7d55f2",
    "market_data": "6cdc5bb954874d922eaee11a8e7b5dd5",
    "match by symbol": "f77a63979b7e28ea7a5573af6a1bed6a",
    "settle by user": "48b2a2098e6eeb84832128a55c4aba8e",
    "orders mirror": "8f24f4c1f86ec86afc49302c09ec5c55",
    "dead_letter": "5c657cc2d521222796026a80a9f7b26b",
}


def test_the_graph_is_the_one_parked_savepoints_were_taken_of(settings: Settings, execution_job: None) -> None:
    """A tripwire, not a proof. A savepoint maps its state to operators by id, and Flink derives an operator's id
    from the graph around it (the job sets no uid): a change to the graph moves ids, and the job then no longer
    resumes the state `tradesim down` parked (books, queued decisions). This sees the chains' first operators only;
    a change that keeps them can still move a stateful operator inside a chain (a sink's committer), so check a
    resume from a savepoint of the old graph too (docs/design/cpu-per-order.md)."""
    (job_id,) = running(settings)
    rest = Flink(settings).rest()
    wait_for(lambda: rest.job(job_id).get("vertices"), 60, "the job's graph")
    vertices = {vertex["id"]: vertex["name"] for vertex in rest.job(job_id)["vertices"]}
    moved = [name for name, id_ in VERTEX_IDS.items() if name not in vertices.get(id_, "")]
    assert not moved, (f"the graph changed ({moved} moved; now {vertices}): savepoints parked by the old graph no "
                       "longer map onto it, see docs/design/cpu-per-order.md")
