"""The ingestion.ingest_batch task: registered under its contract name, thin, and safe to run twice."""

from __future__ import annotations

import pytest
from celery import current_app

from apps.ingestion.models import RawFrame
from apps.ingestion.tasks import ingest_batch
from tests.ingestion import frames

pytestmark = pytest.mark.django_db


def test_task_is_registered_under_its_contract_name_and_routed_to_the_ingestion_queue():
    registered = current_app.tasks["ingestion.ingest_batch"]
    assert registered.__module__ == "apps.ingestion.tasks"
    assert registered.acks_late is True
    route = current_app.amqp.router.route({}, "ingestion.ingest_batch")
    assert route["queue"].name == "ingestion"


def test_running_the_same_batch_twice_archives_it_once():
    lines = [frames.line("price:SPY", frames.price()), "garbage"]
    first = ingest_batch.apply(args=(lines,), kwargs={"source": "uw_ws"}).get()
    second = ingest_batch.apply(args=(lines,)).get()
    assert (first["accepted"], first["quarantined"]) == (1, 1)
    assert (second["accepted"], second["duplicates"], second["quarantined"]) == (0, 1, 1)
    assert RawFrame.objects.count() == 1
    assert RawFrame.objects.get().source == "uw_ws"
    assert first["last_received_at"] == "2026-11-20T14:31:00+00:00"
