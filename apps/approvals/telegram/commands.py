"""Operator commands in Telegram, each behind one Django permission (``COMMAND_PERMISSIONS``, the single place that
says which), calling the same services as the admin.  Synchronous: the bot calls ``command_run`` through
``sync_to_async``.

A command is accepted from the approver chat or from a private chat, and only from a Telegram user linked to an
active operator whose Django user has the command's permission.  Every attempt, allowed or refused, is an
``ApprovalAction`` (``command:/kill``...), with no request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction

from apps.approvals import selectors as approval_selectors
from apps.approvals import services
from apps.approvals.telegram.presses import CHANNEL, actor_name, is_approver_chat
from apps.core import clock
from apps.ops.controls import CONTROLS, ControlError, ControlRefused, ControlResult

logger = logging.getLogger(__name__)

# The commands that are operator controls (apps/ops/controls.py): they run through ``control_run`` with the control's
# own permission, so /kill needs exactly what the admin's and the API's kill switch need.
COMMAND_CONTROLS: dict[str, str] = {
    "kill": "kill_switch_engage",
    "kill flatten": "flatten_all",
    "resume": "kill_switch_release",
    "pause_feed": "feed_pause",
    "resume_feed": "feed_resume",
}

# The permission each command needs ("kill flatten" is /kill with the word flatten).  docs/telegram.md lists them.
COMMAND_PERMISSIONS: dict[str, str] = {
    "status": "execution.view_position",
    "positions": "execution.view_position",
    "pnl": "execution.view_trade",
    **{command: CONTROLS[control].permission for command, control in COMMAND_CONTROLS.items()},
}

# The command menu (setMyCommands); /help, /start and /cancel need no permission.
COMMAND_DESCRIPTIONS: dict[str, str] = {
    "status": "Kill switch, broker, feed, pending approvals",
    "positions": "Open positions",
    "pnl": "Realized and open PnL today",
    "kill": "Engage the kill switch: /kill [flatten] [reason]",
    "resume": "Release the kill switch: /resume [reason]",
    "pause_feed": "Pause a feed: /pause_feed [uw_stream|uw_rest|ib_market] [reason]",
    "resume_feed": "Resume a feed: /resume_feed [uw_stream|uw_rest|ib_market] [reason]",
    "help": "What you may do here",
    "cancel": "Forget an edit you started",
}

_POSITIONS_SHOWN = 30


@dataclass(frozen=True)
class Invocation:
    command: str
    args: list[str]
    chat_id: int
    chat_type: str
    telegram_user_id: int
    username: str

    @property
    def permission_key(self) -> str:
        if self.command == "kill" and self.args[:1] == ["flatten"]:
            return "kill flatten"
        return self.command

    @property
    def reason(self) -> str:
        words = self.args[1:] if self.permission_key == "kill flatten" else self.args
        return " ".join(words).strip() or "from Telegram"


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _status(inv: Invocation, by: str, user: Any) -> str:
    from apps.execution.selectors import account_state, open_positions
    from apps.ingestion.feeds import feeds_state
    from apps.ingestion.uw.stream import stream_state
    from apps.risk.selectors import broker_connected, kill_switch_is_on

    connected, why = broker_connected()
    feed = stream_state()
    paused = [name for name, state in feeds_state().items() if state["paused"]]
    account = account_state()
    return "\n".join(
        [
            f"Kill switch: {'ON' if kill_switch_is_on() else 'off'}",
            f"Broker: {'connected' if connected else 'NOT connected'} ({why})",
            f"UW feed: {'PAUSED' if feed['paused'] else 'not paused'} (listener: {feed.get('status', 'unknown')})",
            f"Paused feeds: {', '.join(paused) or 'none'}",
            f"Pending approvals: {approval_selectors.pending().count()}",
            f"Open positions: {open_positions().count()}",
            f"Net liq {_money(account.net_liq)}, realized today {_money(account.realized_pnl_today)}",
        ]
    )


def _positions(inv: Invocation, by: str, user: Any) -> str:
    from apps.execution.selectors import open_positions

    rows = list(open_positions()[: _POSITIONS_SHOWN + 1])
    if not rows:
        return "No open positions."
    lines = [
        f"{p.option_symbol} x{p.quantity} avg {p.avg_cost} mark {p.mark if p.mark is not None else '-'} "
        f"open PnL {_money(p.unrealized_pnl)}"
        for p in rows[:_POSITIONS_SHOWN]
    ]
    if len(rows) > _POSITIONS_SHOWN:
        lines.append(f"... and more; the admin lists them all ({open_positions().count()} in total).")
    return "\n".join(lines)


def _pnl(inv: Invocation, by: str, user: Any) -> str:
    from apps.execution.selectors import account_state, realized_pnl_on_day

    account = account_state()
    return (
        f"Realized today: {_money(realized_pnl_on_day(instant=clock.now()))}\n"
        f"Open PnL: {_money(account.open_pnl)}\n"
        f"Net liq: {_money(account.net_liq)}, cash {_money(account.cash)}"
    )


def _control(inv: Invocation, by: str, user: Any, name: str, params: dict[str, Any]) -> ControlResult:
    """Run an operator control exactly as the admin, the dashboard and the API run it (same permission, same audit),
    signed ``by`` the Telegram identity and the username."""
    from apps.ops.controls import control_run

    return control_run(name, user=user, params=params, channel="telegram", actor=by)


def _kill(inv: Invocation, by: str, user: Any) -> str:
    flatten = inv.permission_key == "kill flatten"
    name = COMMAND_CONTROLS[inv.permission_key]
    result = _control(inv, by, user, name, {"reason": inv.reason})
    then = " Flattening every position (sent to the execution worker)." if flatten else ""
    return f"Kill switch ON (event {result.detail['event_id']}): new entries are refused.{then}"


def _resume(inv: Invocation, by: str, user: Any) -> str:
    result = _control(inv, by, user, COMMAND_CONTROLS["resume"], {"reason": inv.reason})
    return f"Kill switch released (event {result.detail['event_id']}): signals are judged on their merits again."


def _feed_and_reason(inv: Invocation) -> tuple[str, str]:
    # "/pause_feed uw_rest budget" names the feed; "/pause_feed maintenance" means the UW listener, as it always did.
    from apps.ingestion.feeds import FEEDS, UW_STREAM

    if inv.args and inv.args[0] in FEEDS:
        return inv.args[0], " ".join(inv.args[1:]).strip() or "from Telegram"
    return UW_STREAM, inv.reason


def _pause_feed(inv: Invocation, by: str, user: Any) -> str:
    from apps.ingestion.feeds import FEEDS

    feed, reason = _feed_and_reason(inv)
    _control(inv, by, user, COMMAND_CONTROLS["pause_feed"], {"feed": feed, "reason": reason})
    return f"Feed {feed} paused ({FEEDS[feed]}) until /resume_feed {feed}."


def _resume_feed(inv: Invocation, by: str, user: Any) -> str:
    feed, reason = _feed_and_reason(inv)
    _control(inv, by, user, COMMAND_CONTROLS["resume_feed"], {"feed": feed, "reason": reason})
    return f"Feed {feed} resumed."


_RUN: dict[str, Callable[[Invocation, str, Any], str]] = {
    "status": _status,
    "positions": _positions,
    "pnl": _pnl,
    "kill": _kill,
    "resume": _resume,
    "pause_feed": _pause_feed,
    "resume_feed": _resume_feed,
}


def _record(
    inv: Invocation, *, actor: str, allowed: bool, reason: str = "", detail: dict[str, Any] | None = None
) -> None:
    with transaction.atomic():
        services.action_record(
            channel=CHANNEL,
            actor=actor,
            telegram_user_id=inv.telegram_user_id,
            action=f"command:/{inv.command}"[:40],
            allowed=allowed,
            reason=reason,
            detail={"chat_id": inv.chat_id, "args": inv.args, **(detail or {})},
        )
    if not allowed:
        logger.warning("telegram: /%s by %s refused: %s", inv.command, actor, reason)


def command_run(
    *, command: str, args: list[str], chat_id: int, chat_type: str, telegram_user_id: int, username: str
) -> str:
    """Run ``/command args`` for the Telegram user who sent it, if allowed; the reply to send (short plain text)."""
    inv = Invocation(command, list(args), chat_id, chat_type, telegram_user_id, username)
    actor = actor_name(telegram_user_id=telegram_user_id, username=username)
    if not (is_approver_chat(chat_id) or chat_type == "private"):
        _record(
            inv, actor=actor, allowed=False, reason=f"sent in chat {chat_id}, not the approver chat or a private one"
        )
        return "Commands are taken in the approver chat or in a private chat with me."
    user = services.telegram_user(telegram_user_id)
    if user is None:
        _record(inv, actor=actor, allowed=False, reason="this Telegram user is not linked to an active operator")
        return (
            f"You are not linked to an operator (your Telegram id is {telegram_user_id}). An administrator links you "
            f"with: manage.py telegram_link --telegram-id {telegram_user_id} --user <username>"
        )
    actor = f"{actor} {user.get_username()}"[:120]
    if command == "help":
        _record(inv, actor=actor, allowed=True)
        allowed = [name for name, perm in COMMAND_PERMISSIONS.items() if user.has_perm(perm)]
        decide = user.has_perm(services.DECIDE_PERMISSION)
        return (
            f"You are {user.get_username()}. Commands you may use: "
            + (", ".join(f"/{name}" for name in allowed) or "none")
            + (". You may approve, reject and edit publications." if decide else ". You may not decide approvals.")
        )
    permission_key = inv.permission_key
    permission = COMMAND_PERMISSIONS.get(permission_key)
    if permission is None:
        _record(inv, actor=actor, allowed=False, reason="unknown command")
        return f"Unknown command /{command}; /help lists yours."
    if not (user.is_active and user.has_perm(permission)):
        _record(inv, actor=actor, allowed=False, reason=f"needs {permission}")
        return f"Refused: /{permission_key} needs the permission {permission}."
    _record(inv, actor=actor, allowed=True, detail={"permission": permission})
    try:
        return _RUN[command](inv, actor, user)
    except (ControlRefused, ControlError) as exc:
        return f"Not done: {exc}"
