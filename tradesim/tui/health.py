"""Stack health and Flink job state for the status bar: what `tradesim status --json` and `tradesim jobs list`
show. Blocking calls (pid checks, health probes, the Flink REST API): the app runs `poll` in a worker thread."""

from __future__ import annotations

from tradesim.settings import Settings
from tradesim.tui.model import Health


def poll(settings: Settings) -> Health:
    """One look at the stack's components and the running jobs; never raises."""
    health = Health()
    if settings.stack.runtime == "docker":
        # the native stack's state would be every component stopped while the containers serve (`tradesim status`
        # refuses to read it for the same reason)
        health.error = "docker (docker compose ps)"
    else:
        try:
            from tradesim.stack import registry
            from tradesim.stack.supervisor import Supervisor, status_document

            doc = status_document(settings, "native", Supervisor(settings, registry.build(settings)).status())
            health.components = [(c["name"], c["state"], bool(c["healthy"])) for c in doc["components"]]
        except Exception as exc:  # noqa: BLE001 - a status bar shows any failure as text, it never stops the app
            health.error = f"unknown ({type(exc).__name__})"
    try:
        from tradesim.stack.jobs import cluster, name_of

        health.jobs = [(name_of(j.name), j.state) for j in cluster(settings).jobs(with_checkpoints=False)
                       if j.active]
    except Exception:  # noqa: BLE001 - as above; no cluster is the usual reason
        health.jobs_error = "flink down"
    return health
