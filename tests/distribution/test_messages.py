"""Trade and report messages stay within Discord's limits whatever the data says."""

from __future__ import annotations

from decimal import Decimal

from apps.core.standins.discord import limit_violations
from apps.distribution.discord import messages
from tests.distribution.conftest import SESSION_START, trade_like


def _embed_total(embed: dict) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    return total + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields") or [])


def test_entry_message_explains_the_trade_with_its_signal():
    payload = messages.trade_message(kind="entry", trade=trade_like(7), signal=trade_like(7).signal, tier="premium")

    embed = payload["embeds"][0]
    assert embed["title"] == "ENTRY SPY BULLISH SPY261120C00600000"
    assert embed["description"] == "Call sweeps above the ask with GEX flipping positive."
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Premium"] == "$250.00"
    assert fields["Target"] == "+50.0%"
    assert fields["Stop"] == "-30.0%"
    assert fields["Rule"] == "sweep_cluster_above_ask"
    assert fields["Confidence"] == "72.5%"
    assert "10:00:00 ET" in fields["Entry"]
    assert "premium tier" in embed["footer"]["text"]
    assert payload["allowed_mentions"] == {"parse": []}
    assert limit_violations(payload) == []


def test_exit_message_shows_reason_and_realized_pnl_colored_by_outcome():
    loser = trade_like(
        3,
        exit_price=Decimal("0.80"),
        exit_at=SESSION_START,
        exit_reason="stop",
        realized_pnl=Decimal("-91.30"),
        status="closed",
    )
    payload = messages.trade_message(kind="exit", trade=loser, signal=loser.signal, tier="free")

    embed = payload["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Reason"] == "stop loss hit"
    assert fields["Realized PnL"] == "-$91.30"
    assert fields["Return on premium"] == "-36.0%"
    assert embed["color"] == messages.COLOR_LOSS
    assert payload["content"] == "Closed SPY (stop loss hit): -$91.30"


def test_a_huge_rationale_is_truncated_to_discord_limits():
    trade = trade_like(1, rationale="flow " * 5000, option_symbol="X" * 2000)
    payload = messages.trade_message(kind="entry", trade=trade, signal=trade.signal, tier="premium")

    embed = payload["embeds"][0]
    assert len(embed["title"]) <= 256
    assert len(embed["description"]) <= 4096
    assert embed["description"].endswith(messages.ELLIPSIS)
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])
    assert _embed_total(embed) <= 6000
    assert limit_violations(payload) == []


def test_payload_fit_enforces_every_limit_at_once():
    embed = {
        "title": "T" * 300,
        "description": "D" * 5000,
        "fields": [{"name": "N" * 300, "value": "V" * 2000} for _ in range(40)],
        "footer": {"text": "F" * 100},
    }
    payload = messages.payload_fit({"content": "C" * 2500, "embeds": [embed] * 12})

    assert len(payload["content"]) == 2000
    assert len(payload["embeds"]) <= 10
    first = payload["embeds"][0]
    assert len(first["title"]) == 256
    assert len(first["fields"]) <= 25
    assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for f in first["fields"])
    assert sum(_embed_total(e) for e in payload["embeds"]) <= 6000
    assert limit_violations(payload) == []


def test_payload_fit_leaves_a_message_within_limits_unchanged():
    payload = {"content": "hello", "embeds": [{"title": "t", "description": "d", "fields": []}]}

    fitted = messages.payload_fit(payload)

    assert fitted["content"] == "hello"
    assert fitted["embeds"][0]["title"] == "t"
    assert fitted["embeds"][0]["description"] == "d"


def test_report_message_keeps_the_text_within_the_description_limit():
    payload = messages.report_message(title="Post-market report 2026-11-20", text="line\n" * 2000, tier="standard")

    assert len(payload["embeds"][0]["description"]) <= 4096
    assert limit_violations(payload) == []
