"""Tasks of the core app: the bare hop used by ``bench pipeline`` as its baseline."""

from __future__ import annotations

import time

from celery import shared_task

from apps.core.store import get_redis


@shared_task(name="bench.hop", ignore_result=True)
def bench_hop(run_key: str, started_wall: float, queues: list[str]) -> None:
    """One hop of a bare chain: pass on to the next queue, or record the chain's total latency at the end.

    Running it twice only records one more sample in a benchmark's scratch key; no platform state is touched.
    """
    if queues:
        bench_hop.apply_async(args=(run_key, started_wall, queues[1:]), queue=queues[0])
        return
    get_redis().rpush(run_key, f"{(time.time() - started_wall) * 1000:.3f}")
