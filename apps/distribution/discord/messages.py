"""Discord messages for trades and reports, always within Discord's limits.

Limits (``reference/external_services.md``): content 2,000 characters; at most 10 embeds; an embed's title 256,
description 4,096, at most 25 fields with names of 256 and values of 1,024; all embed text together 6,000.
``payload_fit`` enforces them by truncating (marked with an ellipsis), so a long rationale never makes Discord
refuse a post with a 400.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from apps.core import calendar
from apps.core.money import CONTRACT_MULTIPLIER, cents

CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
EMBED_TOTAL_MAX = 6000
ELLIPSIS = "…"

COLOR_ENTRY = 0x2B6CB0
COLOR_WIN = 0x2F855A
COLOR_LOSS = 0xC53030
COLOR_REPORT = 0x6B46C1

EXIT_REASONS = {
    "target": "profit target reached",
    "stop": "stop loss hit",
    "time": "time exit",
    "flatten": "flattened before the close",
}


class SignalLike(Protocol):
    strategy: str
    rule: str
    rationale: str
    confidence: Decimal


class TradeLike(Protocol):
    """The attributes of ``apps.execution.models.Trade`` a message needs (a protocol, so messages can be previewed
    from any object carrying them).  Read-only properties, so a ``Trade``'s non-null ``entry_at`` satisfies
    ``datetime | None`` (a plain protocol attribute is invariant)."""

    @property
    def id(self) -> int: ...

    @property
    def strategy(self) -> str: ...

    @property
    def ticker(self) -> str: ...

    @property
    def option_symbol(self) -> str: ...

    @property
    def quantity(self) -> int: ...

    @property
    def entry_price(self) -> Decimal | None: ...

    @property
    def entry_at(self) -> datetime | None: ...

    @property
    def exit_price(self) -> Decimal | None: ...

    @property
    def exit_at(self) -> datetime | None: ...

    @property
    def exit_reason(self) -> str: ...

    @property
    def realized_pnl(self) -> Decimal | None: ...

    @property
    def fees(self) -> Decimal | None: ...


def truncate(text: str, limit: int) -> str:
    text = text or ""
    if len(text) <= limit:
        return text
    return text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _embed_text_length(embed: dict[str, Any]) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for field in embed.get("fields") or []:
        total += len(field.get("name") or "") + len(field.get("value") or "")
    return total


def _embed_fit(embed: dict[str, Any], budget: int) -> dict[str, Any]:
    """One embed within the per-part limits and within ``budget`` characters of text in all."""
    fitted = dict(embed)
    if fitted.get("title"):
        fitted["title"] = truncate(fitted["title"], TITLE_MAX)
    if fitted.get("description"):
        fitted["description"] = truncate(fitted["description"], DESCRIPTION_MAX)
    if fitted.get("footer"):
        fitted["footer"] = {**fitted["footer"], "text": truncate(fitted["footer"].get("text") or "", FOOTER_MAX)}
    if fitted.get("author"):
        fitted["author"] = {**fitted["author"], "name": truncate(fitted["author"].get("name") or "", AUTHOR_MAX)}
    fitted["fields"] = [
        {
            "name": truncate(str(f.get("name") or "-"), FIELD_NAME_MAX),
            "value": truncate(str(f.get("value") or "-"), FIELD_VALUE_MAX),
            "inline": bool(f.get("inline", True)),
        }
        for f in (fitted.get("fields") or [])[:FIELDS_MAX]
    ]
    # Over the total: shorten the description first (the free text), then drop trailing fields.
    excess = _embed_text_length(fitted) - budget
    if excess > 0 and fitted.get("description"):
        keep = max(len(fitted["description"]) - excess, 0)
        fitted["description"] = truncate(fitted["description"], keep) if keep > len(ELLIPSIS) else ""
    while _embed_text_length(fitted) > budget and fitted["fields"]:
        fitted["fields"].pop()
    if _embed_text_length(fitted) > budget and fitted.get("title"):
        fitted["title"] = truncate(fitted["title"], max(budget - _embed_text_length(fitted) + len(fitted["title"]), 1))
    return fitted


def payload_fit(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` cut down to what Discord accepts: content, embed count, every embed part and the 6,000 total."""
    fitted = dict(payload)
    if fitted.get("content"):
        fitted["content"] = truncate(fitted["content"], CONTENT_MAX)
    embeds = []
    budget = EMBED_TOTAL_MAX
    for embed in (payload.get("embeds") or [])[:EMBEDS_MAX]:
        if budget <= 0:
            break
        one = _embed_fit(embed, budget)
        budget -= _embed_text_length(one)
        embeds.append(one)
    fitted["embeds"] = embeds
    # Rationale text comes from data: never let it ping @everyone or a role.
    fitted["allowed_mentions"] = {"parse": []}
    return fitted


def _money(value: Decimal | None) -> str:
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(cents(value)):,}"


def _price(value: Decimal | None) -> str:
    return "-" if value is None else f"${value.quantize(Decimal('0.01'))}"


def _ny(instant: datetime | None) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(calendar.NEW_YORK).strftime("%Y-%m-%d %H:%M:%S ET")


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{(value * 100).quantize(Decimal('0.1'))}%"


def trade_message(*, kind: str, trade: TradeLike, signal: SignalLike | None, tier: str) -> dict[str, Any]:
    """The webhook payload announcing a trade's entry or exit, explained by the signal that opened it."""
    strategy = (signal.strategy if signal is not None else "") or trade.strategy
    direction = getattr(signal, "direction", "") if signal is not None else ""
    fields: list[dict[str, Any]] = [
        {"name": "Contract", "value": trade.option_symbol, "inline": True},
        {"name": "Quantity", "value": str(trade.quantity), "inline": True},
        {"name": "Strategy", "value": strategy or "-", "inline": True},
        {"name": "Entry", "value": f"{_price(trade.entry_price)} at {_ny(trade.entry_at)}", "inline": False},
    ]
    if kind == "exit":
        pnl = trade.realized_pnl
        reason = EXIT_REASONS.get(trade.exit_reason or "", trade.exit_reason or "-")
        fields += [
            {"name": "Exit", "value": f"{_price(trade.exit_price)} at {_ny(trade.exit_at)}", "inline": False},
            {"name": "Reason", "value": reason, "inline": True},
            {"name": "Realized PnL", "value": _money(pnl), "inline": True},
        ]
        if trade.entry_price and trade.exit_price is not None:
            change = (trade.exit_price - trade.entry_price) / trade.entry_price
            fields.append({"name": "Return on premium", "value": _pct(change), "inline": True})
        color = COLOR_WIN if pnl is not None and pnl >= 0 else COLOR_LOSS
        title = f"EXIT {trade.ticker} {trade.option_symbol}"
        headline = f"Closed {trade.ticker} ({reason}): {_money(pnl)}"
    else:
        premium = None
        if trade.entry_price is not None:
            premium = trade.entry_price * trade.quantity * CONTRACT_MULTIPLIER
        fields.append({"name": "Premium", "value": _money(premium), "inline": True})
        if signal is not None:
            target = getattr(signal, "profit_target_pct", None)
            stop = getattr(signal, "stop_loss_pct", None)
            fields += [
                {"name": "Target", "value": f"+{_pct(target)}", "inline": True},
                {"name": "Stop", "value": f"-{_pct(stop)}", "inline": True},
            ]
            time_exit_at = getattr(signal, "time_exit_at", None)
            if time_exit_at is not None:
                fields.append({"name": "Time exit", "value": _ny(time_exit_at), "inline": True})
        color = COLOR_ENTRY
        title = f"ENTRY {trade.ticker} {direction.upper()} {trade.option_symbol}".replace("  ", " ")
        headline = f"Opened {trade.quantity} x {trade.option_symbol} at {_price(trade.entry_price)}"
    if signal is not None:
        fields += [
            {"name": "Rule", "value": signal.rule or "-", "inline": True},
            {"name": "Confidence", "value": _pct(signal.confidence), "inline": True},
        ]
        description = signal.rationale or ""
    else:
        description = ""
    embed = {
        "title": title,
        "description": description,
        "color": color,
        "fields": fields,
        "footer": {"text": f"{tier} tier · trade #{trade.id} · not investment advice"},
    }
    stamp = trade.exit_at if kind == "exit" else trade.entry_at
    if stamp is not None:
        embed["timestamp"] = stamp.isoformat()
    return payload_fit({"content": headline, "embeds": [embed]})


def report_message(*, title: str, text: str, tier: str) -> dict[str, Any]:
    """A market report as one embed; text beyond the description limit is cut (the full report stays in the DB)."""
    embed = {
        "title": title,
        "description": text,
        "color": COLOR_REPORT,
        "fields": [],
        "footer": {"text": f"{tier} tier · not investment advice"},
    }
    return payload_fit({"content": title, "embeds": [embed]})


COLOR_NOTICE = 0xD69E2E  # stop changes and corrections
COLOR_RETRACTION = 0x718096


def stop_message(
    *, trade: TradeLike, old_stop: Decimal | None, new_stop: Decimal, reason: str, at: datetime, tier: str
) -> dict[str, Any]:
    """A trade's stop moved (the breakeven rule or an operator): the old and new levels and why."""
    embed = {
        "title": f"STOP MOVED {trade.ticker} {trade.option_symbol}",
        "description": reason,
        "color": COLOR_NOTICE,
        "fields": [
            {"name": "Contract", "value": trade.option_symbol, "inline": True},
            {"name": "Quantity", "value": str(trade.quantity), "inline": True},
            {"name": "Entry", "value": _price(trade.entry_price), "inline": True},
            {"name": "Old stop", "value": _price(old_stop), "inline": True},
            {"name": "New stop", "value": _price(new_stop), "inline": True},
        ],
        "footer": {"text": f"{tier} tier · trade #{trade.id} · not investment advice"},
        "timestamp": at.isoformat(),
    }
    headline = f"Stop on {trade.option_symbol} moved to {_price(new_stop)}"
    return payload_fit({"content": headline, "embeds": [embed]})


def summary_message(*, day: str, summary: dict[str, Any], tier: str) -> dict[str, Any]:
    """The day's results: trades closed, wins and losses, realized PnL and fees, per strategy, best and worst."""
    fields: list[dict[str, Any]] = [
        {"name": "Trades closed", "value": str(summary["closed"]), "inline": True},
        {"name": "Wins / losses", "value": f"{summary['wins']} / {summary['losses']}", "inline": True},
        {"name": "Still open", "value": str(summary["still_open"]), "inline": True},
        {"name": "Realized PnL", "value": _money(Decimal(summary["realized_pnl"])), "inline": True},
        {"name": "Fees", "value": _money(Decimal(summary["fees"])), "inline": True},
    ]
    for strategy, row in summary["by_strategy"].items():
        fields.append(
            {
                "name": strategy,
                "value": f"{row['closed']} closed, {_money(Decimal(row['realized_pnl']))}",
                "inline": True,
            }
        )
    for label in ("best", "worst"):
        row = summary.get(label)
        if row:
            fields.append(
                {
                    "name": label.capitalize(),
                    "value": f"{row['option_symbol']} x{row['quantity']}: {_money(Decimal(row['realized_pnl']))}",
                    "inline": False,
                }
            )
    pnl = Decimal(summary["realized_pnl"])
    embed = {
        "title": f"DAILY SUMMARY {day}",
        "description": "" if summary["closed"] else "No trade closed today.",
        "color": COLOR_WIN if pnl >= 0 else COLOR_LOSS,
        "fields": fields,
        "footer": {"text": f"{tier} tier · not investment advice"},
    }
    return payload_fit({"content": f"Daily summary {day}: {_money(pnl)} realized", "embeds": [embed]})


def explanation_message(*, title: str, text: str, tier: str, trade_id: int) -> dict[str, Any]:
    """An approved AI explanation of a trade (its evidence citations stay in the text)."""
    embed = {
        "title": title,
        "description": text,
        "color": COLOR_REPORT,
        "fields": [],
        "footer": {
            "text": f"{tier} tier · trade #{trade_id} · AI-written, approved by a person · not investment advice"
        },
    }
    return payload_fit({"content": title, "embeds": [embed]})


def _original_title(original: dict[str, Any]) -> str:
    embeds = original.get("embeds") or []
    return (embeds[0].get("title") if embeds else "") or original.get("content") or "an earlier post"


def retraction_message(*, original: dict[str, Any], message_id: str, reason: str, tier: str) -> dict[str, Any]:
    """Withdraws a post this tier received: names it (title, message id) and says why."""
    title = _original_title(original)
    embed = {
        "title": f"RETRACTED: {title}",
        "description": reason,
        "color": COLOR_RETRACTION,
        "fields": [{"name": "Retracted message", "value": message_id or "-", "inline": True}],
        "footer": {"text": f"{tier} tier · disregard the retracted post"},
    }
    return payload_fit({"content": f"Retraction: disregard {title}", "embeds": [embed]})


def correction_message(*, original: dict[str, Any], message_id: str, text: str, tier: str) -> dict[str, Any]:
    """Corrects a post this tier received: the corrected text, naming the post it replaces."""
    title = _original_title(original)
    embed = {
        "title": f"CORRECTION: {title}",
        "description": text,
        "color": COLOR_NOTICE,
        "fields": [{"name": "Corrects message", "value": message_id or "-", "inline": True}],
        "footer": {"text": f"{tier} tier · this replaces the earlier post"},
    }
    return payload_fit({"content": f"Correction to {title}", "embeds": [embed]})


def corrected_message(*, original: dict[str, Any], text: str) -> dict[str, Any]:
    """The original post, not yet released to a tier, carrying the correction instead of being followed by one."""
    fixed = dict(original)
    embeds = [dict(e) for e in (original.get("embeds") or [])]
    if embeds:
        embeds[0]["description"] = text
        embeds[0]["title"] = f"{embeds[0].get('title') or ''} (corrected)".strip()
    else:
        fixed["content"] = text
    fixed["embeds"] = embeds
    return payload_fit(fixed)
