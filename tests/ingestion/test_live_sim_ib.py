"""``manage.py live_sim --broker ib``: the live path trading through ib_listener against the TWS simulator.

The 2026-11-20 seed 7 session from 09:50 (after the 0DTE entry window opens), 40 s at 10x (about 7 minutes of it; the
file stops at 10:10, so it is generated and loaded in a fraction of the time the rest of the day would take):
signals are approved, orders go to the simulator as BrokerCommands carried out by the listener, and the fills come
back into the database.  live_sim exits 0 only when the database and the simulator agree on the filled orders.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from apps.core.bench import database_url
from apps.execution.models import Order

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_live_sim_fills_orders_through_the_tws_simulator(tmp_path, requires_real_services, redis_store):
    session = tmp_path / "session.ndjson.gz"
    call_command("make_session", date="2026-11-20", seed=7, out=str(session), start="09:50", end="10:10")
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        TP_TASKS_EAGER="0",
        LOG_LEVEL="warning",
        TP_DATA_DIR=str(tmp_path),
    )
    argv = [sys.executable, "manage.py", "live_sim", "--broker", "ib", "--session", str(session)]
    argv += ["--speed", "10", "--seconds", "40", "--every", "5"]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert elapsed < 120, output[-2000:]
    assert "ib_listener connected" in output
    assert Order.objects.filter(broker="ib", status=Order.Status.FILLED).exists(), output[-4000:]
    agreed = [line for line in output.splitlines() if "database and simulator agree" in line]
    assert agreed and "agree: 0 filled" not in agreed[0], output[-2000:]
    live = [line for line in output.splitlines() if line.startswith("live :")]
    assert live and "IB connected" in live[-1]
