"""gunicorn reads ``./gunicorn.conf.py`` by default, so ``gunicorn tradingplatform.wsgi`` (compose's web command) runs
these hooks without a ``-c`` flag.

Importing ``tradingplatform`` here, in the master, makes the master own the metrics directory
(``tradingplatform.metrics_dir``): its forked workers inherit it, so ``/metrics`` of any worker sums them all; and the
master tells ``prometheus_client`` when a worker is gone, so that worker's live gauges stop counting.
"""

from __future__ import annotations

from typing import Any

import tradingplatform  # noqa: F401  (prepares PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
