"""The execution job's graph as Flink runs it."""

from __future__ import annotations

from tradesim.settings import Settings
from tradesim.stack.flink import Flink

from .conftest import running

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
    """A tripwire. A savepoint maps its state to operators by id, and Flink derives each id from the graph around
    it (PyFlink keeps no `set_uid_hash` on a Python stage, and a Kafka sink takes none): so any change to the
    job's graph orphans the state `tradesim down` parked (books, queued decisions), and the job no longer
    resumes it. Change the graph only with a way for parked state to follow (docs/design/cpu-per-order.md)."""
    (job_id,) = running(settings)
    vertices = {vertex["id"]: vertex["name"] for vertex in Flink(settings).rest().job(job_id)["vertices"]}
    assert {name: id_ in vertices and name in vertices[id_] for name, id_ in VERTEX_IDS.items()} == {
        name: True for name in VERTEX_IDS}, vertices
