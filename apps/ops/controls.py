"""The operator's controls, one registry for every console: the admin's actions, the dashboard, the DRF API (and
whatever comes next) all go through ``control_run``, so a control means the same thing, needs the same permission and
leaves the same audit entry wherever it is pressed.

A control is a name (``feed_pause``, ``kill_switch_engage`` ...), the one Django permission it needs, a label, and
its parameters.  ``control_run``:

1. refuses (``ControlRefused``) a user who is not active or lacks the permission (superusers pass, as in Django);
2. validates the parameters (``ControlError`` with a message an operator can act on: unknown feed, signal not
   pending, order not cancellable ...);
3. calls the same domain service the Telegram commands and the admin call (the kill switch, ``order_cancel``,
   ``position_close``, ``signal_review`` ...) — a control never reimplements a write;
4. writes one ``AuditLog`` row per attempt, allowed or not: action ``control.<name>``, actor the username, detail
   ``{channel, params, outcome, reason|error|result}``.  The services keep writing their own entries too (the kill
   switch's ``risk.kill_switch.engage`` ...), so the domain's history does not depend on which console was used.

Overrides never bypass risk: approving a signal sends it to the risk review now, where the kill switch and every limit
still apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractUser, AnonymousUser

from apps.ops.services import audit_record

logger = logging.getLogger(__name__)

CHANNELS = ("admin", "api", "telegram", "dashboard")
_TEXT_MAX = 500


class ControlRefused(Exception):
    """The user may not run this control (inactive, or without its permission).  Recorded as refused."""


class ControlError(Exception):
    """The control cannot run with these parameters or in this state (bad input, nothing to do).  Recorded."""


@dataclass(frozen=True)
class ControlResult:
    ok: bool
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlParam:
    """One parameter: ``kind`` is ``text``, ``int`` (a positive id) or ``choice`` (one of ``choices``)."""

    name: str
    kind: str
    help: str
    required: bool = True
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Control:
    name: str
    permission: str  # "app_label.codename"
    label: str
    params: tuple[ControlParam, ...]
    run: Callable[[dict[str, Any], str, str], ControlResult] = field(repr=False)  # (params, actor, channel)


# What ``request.user`` is in a view or an admin action (the Django user model, or the anonymous user).
User = AbstractUser | AnonymousUser


# --- the controls -----------------------------------------------------------------------------------------------------
def _feed_param() -> ControlParam:
    from apps.ingestion.feeds import FEEDS

    return ControlParam(
        "feed", "choice", "the feed: " + "; ".join(f"{k}: {v}" for k, v in FEEDS.items()), True, tuple(FEEDS)
    )


_REASON = ControlParam("reason", "text", "why (kept in the audit log)", required=False)


def _feed_set(paused: bool) -> Callable[[dict[str, Any], str, str], ControlResult]:
    def run(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
        from apps.ingestion.feeds import feed_pause_set

        feed = params["feed"]
        control = feed_pause_set(feed=feed, paused=paused, actor=actor, reason=params.get("reason", ""))
        verb = "paused" if paused else "resumed"
        return ControlResult(True, f"Feed {feed} {verb}.", {"feed": feed, "paused": paused, "control_id": control.pk})

    return run


def _caches_flush(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.ops.caches import caches_flush

    pattern = params["pattern"]
    deleted = caches_flush(pattern=pattern)
    return ControlResult(True, f"Deleted {deleted} {pattern}:* key(s).", {"pattern": pattern, "deleted": deleted})


def _signal_approve(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.risk.services import SignalNotPending, signal_override_approve
    from apps.signals.models import Signal

    try:
        decision = signal_override_approve(signal_id=params["signal_id"], by=actor, reason=params.get("reason", ""))
    except (SignalNotPending, Signal.DoesNotExist) as exc:
        raise ControlError(str(exc)) from exc
    verdict = "approved by risk" if decision.approved else "rejected by risk"
    return ControlResult(
        decision.approved,
        f"Signal {params['signal_id']} sent to risk review: {verdict}. {decision.reason}",
        {"signal_id": params["signal_id"], "decision_id": decision.pk, "approved": decision.approved},
    )


def _signal_reject(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.risk.services import SignalNotPending, signal_override_reject
    from apps.signals.models import Signal

    try:
        decision = signal_override_reject(signal_id=params["signal_id"], by=actor, reason=params.get("reason", ""))
    except (SignalNotPending, Signal.DoesNotExist) as exc:
        raise ControlError(str(exc)) from exc
    return ControlResult(
        True,
        f"Signal {params['signal_id']} {decision.reason}.",
        {"signal_id": params["signal_id"], "decision_id": decision.pk},
    )


def _order_cancel(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.execution.models import OPEN_ORDER_STATUSES, Order
    from apps.execution.services import order_cancel

    order = Order.objects.filter(pk=params["order_id"]).first()
    if order is None:
        raise ControlError(f"no order {params['order_id']}")
    if order.status not in OPEN_ORDER_STATUSES:
        raise ControlError(f"order {order.client_order_id} is {order.status}: not cancellable")
    order = order_cancel(order_id=order.pk, by=actor)
    cancelled = order.status not in OPEN_ORDER_STATUSES
    message = (
        f"Order {order.client_order_id} is {order.status}."
        if cancelled
        else f"Cancel of {order.client_order_id} sent; the broker has not confirmed it yet ({order.status})."
    )
    return ControlResult(cancelled, message, {"order_id": order.pk, "status": order.status})


def _position_close(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.execution.models import Trade
    from apps.execution.services import position_close

    trade = Trade.objects.filter(pk=params["trade_id"]).first()
    if trade is None:
        raise ControlError(f"no trade {params['trade_id']}")
    if trade.status != Trade.Status.OPEN:
        raise ControlError(f"trade {trade.pk} ({trade.option_symbol}) is {trade.status}: nothing to close")
    trade = position_close(trade_id=trade.pk)
    closed = trade.status != Trade.Status.OPEN
    message = (
        f"Trade {trade.pk} ({trade.option_symbol}) closed at {trade.exit_price}."
        if closed
        else f"Trade {trade.pk} ({trade.option_symbol}) is still open: the exit was not filled (see its orders)."
    )
    return ControlResult(closed, message, {"trade_id": trade.pk, "status": trade.status})


def _reason_or_default(params: dict[str, Any], channel: str) -> str:
    return params.get("reason") or f"from the {channel}"


def _flatten_all(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.risk.services import kill_switch_engage

    # Flattening while new entries keep coming would only reopen the book: like Telegram's "/kill flatten" it engages
    # the kill switch and sends the flatten pass to the execution worker, which owns the book.
    event = kill_switch_engage(by=actor, reason=_reason_or_default(params, channel), flatten=True)
    return ControlResult(
        True,
        f"Kill switch ON (event {event.pk}); every open position is being closed on the execution worker.",
        {"event_id": event.pk, "flatten": True},
    )


def _kill_switch_engage(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.risk.services import kill_switch_engage

    event = kill_switch_engage(by=actor, reason=_reason_or_default(params, channel))
    return ControlResult(True, f"Kill switch ON (event {event.pk}): new entries are refused.", {"event_id": event.pk})


def _kill_switch_release(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.risk.services import kill_switch_release

    event = kill_switch_release(by=actor, reason=_reason_or_default(params, channel))
    return ControlResult(True, f"Kill switch released (event {event.pk}).", {"event_id": event.pk})


def _alert_acknowledge(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.core import clock
    from apps.ops.models import Alert

    alert = Alert.objects.filter(pk=params["alert_id"]).first()
    if alert is None:
        raise ControlError(f"no alert {params['alert_id']}")
    # A conditional update: two operators pressing at once leave one name, the first.
    updated = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
        acknowledged_at=clock.now(), acknowledged_by=actor
    )
    if updated != 1:
        alert.refresh_from_db()
        raise ControlError(f"alert {alert.pk} was acknowledged already by {alert.acknowledged_by}")
    return ControlResult(True, f"Alert {alert.pk} ({alert.rule}) acknowledged.", {"alert_id": alert.pk})


def _post_resend(params: dict[str, Any], actor: str, channel: str) -> ControlResult:
    from apps.distribution.models import DistributionPost
    from apps.distribution.services import posts_resend_failed

    post = DistributionPost.objects.filter(pk=params["post_id"]).first()
    if post is None:
        raise ControlError(f"no post {params['post_id']}")
    if post.status != DistributionPost.Status.FAILED:
        raise ControlError(f"post {post.pk} is {post.status}: only failed posts are re-sent")
    count = posts_resend_failed(post_ids=[post.pk], actor=actor)
    if count != 1:
        raise ControlError(f"post {post.pk} is no longer failed: not re-sent")
    return ControlResult(True, f"Post {post.pk} scheduled again, due now.", {"post_id": post.pk})


def _registry() -> dict[str, Control]:
    from apps.ops.caches import CACHE_PATTERNS

    controls = [
        Control(
            "feed_pause", "ingestion.pause_feed", "Pause a market data feed", (_feed_param(), _REASON), _feed_set(True)
        ),
        Control(
            "feed_resume",
            "ingestion.pause_feed",
            "Resume a market data feed",
            (_feed_param(), _REASON),
            _feed_set(False),
        ),
        Control(
            "caches_flush",
            "ops.flush_caches",
            "Flush the latest:* or analytics:* caches",
            (ControlParam("pattern", "choice", "which cache: latest or analytics", True, tuple(CACHE_PATTERNS)),),
            _caches_flush,
        ),
        Control(
            "signal_approve",
            "signals.override_signal",
            "Send a pending signal to risk review now",
            (ControlParam("signal_id", "text", "the signal's signal_id"), _REASON),
            _signal_approve,
        ),
        Control(
            "signal_reject",
            "signals.override_signal",
            "Reject a pending signal",
            (ControlParam("signal_id", "text", "the signal's signal_id"), _REASON),
            _signal_reject,
        ),
        Control(
            "order_cancel",
            "execution.cancel_order",
            "Cancel a working order",
            (ControlParam("order_id", "int", "the order's id"),),
            _order_cancel,
        ),
        Control(
            "position_close",
            "execution.close_position",
            "Close an open trade now",
            (ControlParam("trade_id", "int", "the trade's id"),),
            _position_close,
        ),
        Control(
            "flatten_all",
            "risk.flatten_positions",
            "Engage the kill switch and close every position",
            (_REASON,),
            _flatten_all,
        ),
        Control(
            "kill_switch_engage", "risk.engage_kill_switch", "Engage the kill switch", (_REASON,), _kill_switch_engage
        ),
        Control(
            "kill_switch_release",
            "risk.release_kill_switch",
            "Release the kill switch",
            (_REASON,),
            _kill_switch_release,
        ),
        Control(
            "alert_acknowledge",
            "ops.acknowledge_alert",
            "Acknowledge an alert",
            (ControlParam("alert_id", "int", "the alert's id"),),
            _alert_acknowledge,
        ),
        Control(
            "post_resend",
            "distribution.resend_distributionpost",
            "Re-send a failed Discord post",
            (ControlParam("post_id", "int", "the post's id"),),
            _post_resend,
        ),
    ]
    return {control.name: control for control in controls}


CONTROLS: dict[str, Control] = _registry()


# --- running one ------------------------------------------------------------------------------------------------------
def _clean(control: Control, params: Mapping[str, Any]) -> dict[str, Any]:
    known = {p.name for p in control.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ControlError(
            f"{control.name} takes no parameter {', '.join(unknown)}"
            + (f" (it takes {', '.join(sorted(known))})" if known else " (it takes none)")
        )
    cleaned: dict[str, Any] = {}
    for param in control.params:
        raw = params.get(param.name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if param.required:
                raise ControlError(f"{control.name} needs {param.name}: {param.help}")
            continue
        if param.kind == "int":
            if isinstance(raw, bool):
                raise ControlError(f"{param.name} must be a positive integer, not {raw!r}")
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise ControlError(f"{param.name} must be a positive integer, not {raw!r}") from None
            if value <= 0:
                raise ControlError(f"{param.name} must be a positive integer, not {raw!r}")
            cleaned[param.name] = value
        elif param.kind == "choice":
            if raw not in param.choices:
                raise ControlError(f"unknown {param.name} {raw!r}: one of {', '.join(param.choices)}")
            cleaned[param.name] = raw
        else:
            if not isinstance(raw, str | int):
                raise ControlError(f"{param.name} must be text, not {type(raw).__name__}")
            text = str(raw).strip()
            if len(text) > _TEXT_MAX:
                raise ControlError(f"{param.name} is longer than {_TEXT_MAX} characters")
            cleaned[param.name] = text
    return cleaned


def _actor(user: User) -> str:
    return str(user.get_username() or "anonymous") if user.is_authenticated else "anonymous"


def _audit(*, name: str, actor: str, channel: str, params: Mapping[str, Any], outcome: str, **more: Any) -> None:
    audit_record(
        actor=actor,
        action=f"control.{name}"[:100],
        target=str(next(iter(params.values()), "")) if params else "",
        detail={"channel": channel, "params": dict(params), "outcome": outcome, **more},
    )


def control_allowed(name: str, *, user: User) -> bool:
    """Whether ``user`` may run control ``name`` (what ``control_run`` checks; consoles use it to hide buttons)."""
    control = CONTROLS.get(name)
    return bool(control is not None and user.is_active and user.has_perm(control.permission))


def controls_for(user: User) -> list[Control]:
    """The controls ``user`` may run, in registry order."""
    return [control for name, control in CONTROLS.items() if control_allowed(name, user=user)]


def control_run(
    name: str, *, user: User, params: Mapping[str, Any], channel: str, actor: str | None = None
) -> ControlResult:
    """Run control ``name`` for ``user`` from ``channel`` (admin, api, telegram, dashboard) with ``params``.

    ``actor`` is how the run is signed in the records (default: the username); Telegram signs with the Telegram
    identity and the username, so the kill switch's history says where the order came from.

    Raises ``ControlRefused`` without the permission and ``ControlError`` for an unknown control or channel, bad
    parameters, or a state the control cannot act on; both are audited before they are raised, as is every run
    (``outcome`` ``ok`` or ``not_done`` when the service ran but did not get there, e.g. an exit the broker did not
    fill).  Any other exception from the service is audited as ``failed`` and raised unchanged.
    """
    actor = actor or _actor(user)
    params = dict(params or {})
    control = CONTROLS.get(name)
    if control is None or channel not in CHANNELS:
        error = f"unknown control {name!r}" if control is None else f"unknown channel {channel!r}"
        _audit(name=name, actor=actor, channel=channel, params=params, outcome="error", error=error)
        raise ControlError(error)
    if not (user.is_active and user.has_perm(control.permission)):
        reason = f"{name} needs the permission {control.permission}"
        if not user.is_active:
            reason = f"{actor} is not an active user"
        _audit(name=name, actor=actor, channel=channel, params=params, outcome="refused", reason=reason)
        logger.warning("control %s by %s (%s) refused: %s", name, actor, channel, reason)
        raise ControlRefused(reason)
    try:
        cleaned = _clean(control, params)
        result = control.run(cleaned, actor, channel)
    except ControlError as exc:
        _audit(name=name, actor=actor, channel=channel, params=params, outcome="error", error=str(exc))
        raise
    except Exception as exc:
        _audit(
            name=name,
            actor=actor,
            channel=channel,
            params=params,
            outcome="failed",
            error=f"{type(exc).__name__}: {exc}",
        )
        logger.exception("control %s by %s (%s) failed", name, actor, channel)
        raise
    _audit(
        name=name,
        actor=actor,
        channel=channel,
        params=cleaned,
        outcome="ok" if result.ok else "not_done",
        message=result.message,
        result=result.detail,
    )
    logger.info("control %s by %s (%s): %s", name, actor, channel, result.message)
    return result
