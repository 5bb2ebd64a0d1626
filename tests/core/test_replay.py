"""The main job: a recorded session through every stage, every line accounted for, idempotent on a second run."""

from __future__ import annotations

import gzip
import json
from datetime import date, time
from pathlib import Path

import orjson
import pytest
from django.core.management import CommandError, call_command

from apps.commentary.models import AiReport
from apps.distribution.models import DistributionPost
from apps.execution.models import Fill, Order, Trade
from apps.ingestion.models import QuarantinedFrame
from apps.ingestion.sessions import session_lines
from apps.risk.models import RiskDecision
from apps.signals.models import Signal
from tests.ingestion import frames as ingestion_frames

DAY = date(2026, 11, 20)


def _replay(path: Path, out: Path) -> dict:
    call_command("replay", str(path), "--json", str(out), "--no-progress", stdout=open("/dev/null", "w"))
    return json.loads(out.read_text())


def _write(path: Path, lines: list[bytes], *, gz: bool) -> None:
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.django_db(transaction=True)
def test_a_messy_session_made_by_anyone_has_every_line_accounted_for(tmp_path):
    good = [line.encode() for line in session_lines(DAY, 3, tickers=("SPY",), start=time(10, 0), end=time(10, 5))]
    ack = orjson.dumps({"received_at": 1795186800000, "frame": ["price:SPY", {"response": {}, "status": "ok"}]})
    junk = [
        b"",  # an empty line
        b"{not json",
        b"[1, 2, 3]",
        b'{"frame": ["price:SPY", {"close": "660.1"}]}',  # no received_at, and a payload missing its time
        b'{"received_at": 1795186800000, "frame": ["mystery-channel", {"x": 1}]}',
        b'{"received_at": 1795186800000, "frame": "not a pair"}',
        b"\xff\xfe bytes that are not UTF-8",
        b'"just a string"',
        ack,
    ]
    lines = good[:40] + junk + good[40:] + good[:5]  # the last five repeat earlier frames
    path = tmp_path / "messy.ndjson.gz"
    _write(path, lines, gz=True)

    summary = _replay(path, tmp_path / "out.json")

    frames = summary["frames"]
    assert summary["lines"] == len(lines)
    assert frames["accepted"] + frames["duplicates"] + frames["quarantined"] == len(lines)
    assert frames["duplicates"] >= 5
    assert frames["quarantined"] >= 7
    assert QuarantinedFrame.objects.count() == frames["quarantined"]
    assert all(q.reason for q in QuarantinedFrame.objects.all())
    assert ingestion_frames.archived_frames() == frames["accepted"]


@pytest.mark.django_db(transaction=True)
def test_a_file_without_any_timestamp_is_still_accounted_for(tmp_path):
    path = tmp_path / "nothing.ndjson"
    _write(path, [b"garbage", b"", b"{}"], gz=False)
    summary = _replay(path, tmp_path / "out.json")
    assert summary["lines"] == 3
    assert summary["frames"]["quarantined"] == 3


def test_a_missing_session_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="session file not found"):
        call_command("replay", str(tmp_path / "absent.ndjson"), "--no-progress")


def _state() -> dict[str, int]:
    return {
        "raw": ingestion_frames.archived_frames(),
        "signals": Signal.objects.count(),
        "decisions": RiskDecision.objects.count(),
        "orders": Order.objects.count(),
        "fills": Fill.objects.count(),
        "trades": Trade.objects.count(),
        "posts": DistributionPost.objects.count(),
        "reports": AiReport.objects.count(),
    }


@pytest.mark.django_db(transaction=True)
def test_an_hour_of_trading_goes_through_every_stage_and_a_second_replay_adds_nothing(tmp_path):
    path = tmp_path / "hour.ndjson"
    lines = [line.encode() for line in session_lines(DAY, 7, start=time(10, 0), end=time(11, 0))]
    _write(path, lines, gz=False)

    first = _replay(path, tmp_path / "first.json")

    assert first["frames"]["accepted"] + first["frames"]["duplicates"] + first["frames"]["quarantined"] == len(lines)
    assert first["signals"]["total"] > 0
    assert first["risk"]["approved"] > 0
    assert first["orders"]["filled"] > 0
    tiers = first["distribution"]["by_tier"]
    assert set(tiers) == {"premium", "standard", "free"}
    assert all(counts["sent"] > 0 for counts in tiers.values())
    # the day is played from 08:59 to 16:35 New York: all three reports were written, as templates (no API key)
    assert first["reports"]["by_kind"] == {"pre_market": "template", "intraday": "template", "post_market": "template"}
    # every executed trade got its explanation (template, citing its evidence); nobody approved any in the replay, so
    # each waits for a person or expired unanswered on the simulated beat (the approval TTL is an hour)
    assert first["explanations"]["count"] == first["trades"]["opened"]
    assert first["explanations"]["template"] == first["explanations"]["count"]
    assert set(first["explanations"]["by_status"]) <= {"pending_approval", "expired"}
    assert first["approvals"]["pending"].get("ai_explanation", 0) == first["explanations"]["by_status"].get(
        "pending_approval", 0
    )
    every_signal_explained = Signal.objects.exclude(rationale="").exclude(rule="").count()
    assert every_signal_explained == Signal.objects.count()
    before = _state()

    second = _replay(path, tmp_path / "second.json")

    assert second["frames"]["accepted"] == 0
    assert second["frames"]["duplicates"] + second["frames"]["quarantined"] == len(lines)
    assert _state() == before
    assert second["signals"] == first["signals"] and second["orders"] == first["orders"]
