"""Failure paths: Redis down mid-batch, a frame archived by another worker mid-batch, two workers at once."""

from __future__ import annotations

import threading

import pytest
import redis
from django.db import connection

from apps.ingestion import redis_keys, services
from apps.ingestion.models import OptionTrade, PriceTick, RawFrame
from apps.ingestion.services import ingest_lines
from apps.ingestion.uw.lines import parse_line
from tests.ingestion import frames


def batch() -> list[str]:
    return [
        frames.line("price:SPY", frames.price()),
        frames.line("option_trades:SPY", frames.option_trade(id="race-trade")),
        frames.line("gex:SPY", frames.gex()),
    ]


@pytest.mark.django_db
def test_when_redis_fails_the_batch_rolls_back_and_the_retry_ingests_everything(monkeypatch, redis_store):
    lines = batch()

    def redis_down(*, updates):
        raise redis.exceptions.ConnectionError("connection refused")

    monkeypatch.setattr(redis_keys, "latest_publish", redis_down)
    with pytest.raises(redis.exceptions.ConnectionError):
        ingest_lines(lines=lines, source="t")
    assert RawFrame.objects.count() == 0
    monkeypatch.undo()
    retry = ingest_lines(lines=lines, source="t")
    assert retry.accepted == 3
    assert redis_store.hget("latest:uw:price:SPY", "close") == "661.9"


@pytest.mark.django_db
def test_a_frame_archived_by_another_worker_after_the_look_up_counts_as_a_duplicate(monkeypatch):
    lines = batch()
    taken = parse_line(lines[0])  # the price frame (option trades are keyed by their UW id, not archived per row)
    real_archive = services._archive

    def archive_after_another_worker(frames_to_archive, *, source):
        RawFrame.objects.create(
            frame_hash=taken.frame_hash, channel=taken.channel.name, received_at=taken.received_at, payload={}
        )
        return real_archive(frames_to_archive, source=source)

    monkeypatch.setattr(services, "_archive", archive_after_another_worker)
    result = ingest_lines(lines=lines, source="t")
    assert (result.accepted, result.duplicates, result.quarantined) == (2, 1, 0)
    # The other worker owns that frame's row; this call does not write it.
    assert PriceTick.objects.count() == 0
    assert OptionTrade.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_ingesting_the_same_lines_at_once_store_each_frame_once(requires_real_services):
    ticks = [frames.price("QQQ", time=frames.RECEIVED_MS - i * 1000) for i in range(50)]
    lines = batch() + [frames.line("price:QQQ", tick) for tick in ticks]
    results = []
    errors = []
    start = threading.Barrier(2)

    def worker():
        try:
            start.wait()
            results.append(ingest_lines(lines=lines, source="race"))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(result.accepted for result in results) == len(lines)
    assert sum(result.duplicates for result in results) == len(lines)
    assert frames.archived_frames() == len(lines)
    assert PriceTick.objects.count() == 51
    assert OptionTrade.objects.count() == 1
