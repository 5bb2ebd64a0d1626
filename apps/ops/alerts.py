"""The platform's own alert evaluator and the delivery of alerts to the operators' channels.

Prometheus and Alertmanager (``docker/prometheus/alerts.yml``) watch the same conditions from the metrics, but a
deployment without them must still tell its operators that the kill switch tripped or a worker stopped consuming.
Every 15 s beat's ``ops.alerts_evaluate`` reads ``apps.ops.selectors`` and

- opens an ``Alert`` row for each condition that holds (one open row per key, a database constraint), or refreshes the
  open one (``last_seen_at``, summary, reading);
- resolves the open rows of each rule it could evaluate whose condition no longer holds (a rule it could not read --
  Redis down, say -- leaves its rows as they are rather than calling them fine);
- delivers what is owed: a notice when an alert is raised and one when it is resolved, to the Telegram chat
  ``OPS_ALERT_TELEGRAM_CHAT_ID`` (python-telegram-bot, ``TELEGRAM_BOT_TOKEN``, ``TELEGRAM_BASE_URL``) and/or the
  Discord webhook ``OPS_ALERT_DISCORD_WEBHOOK_URL`` (discord-webhook).

Delivery bookkeeping lives on the row: ``detail["notified"][phase][channel]`` is when ``phase`` (``raised`` or
``resolved``) reached ``channel``; ``delivered_at`` is set once the current phase reached every configured channel
(and cleared when the alert resolves, because a resolution notice is owed).  A channel is marked the moment it
answered, so a failure of the other channel, or a crash, never makes it receive the notice twice; a failed channel is
tried again on the next evaluation.  A rate limit (429) holds that channel for the time it asked
(``ops:alerts:hold:<channel>`` in Redis), the other channel still gets its notice.  Alertmanager's alerts
(``apps.ops.alertmanager``) are delivered the same way.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from apps.core import calendar, clock, store
from apps.ops import selectors
from apps.ops.models import Alert

logger = logging.getLogger(__name__)

Severity = Alert.Severity

# The contract's rule names (also docker/prometheus/alerts.yml) with the severity the evaluator gives them.
RULES: dict[str, str] = {
    "RedisMemoryHigh": Severity.WARNING,
    "PostgresReplicationLag": Severity.WARNING,
    "IBDisconnected": Severity.CRITICAL,
    "FeedStale": Severity.CRITICAL,
    "QueueBacklog": Severity.WARNING,
    "DeadLettersGrowing": Severity.WARNING,
    "KillSwitchTripped": Severity.CRITICAL,
    "WorkerStalled": Severity.CRITICAL,
}
RUNBOOK = "docs/alerting.md#{anchor}"
LOCK_KEY = "ops:alerts:lock"
LOCK_SECONDS = 120  # longer than one evaluation with two slow channels (10 s timeouts each, a batch of notices)
HOLD_KEY = "ops:alerts:hold:{channel}"
DELIVERY_BATCH = 50  # notices per run: a backlog after an outage drains over a few runs instead of one long one
RAISED, RESOLVED = "raised", "resolved"
TELEGRAM, DISCORD = "telegram", "discord"
DEFAULT_TELEGRAM_ROOT = "https://api.telegram.org"


def runbook(rule: str) -> str:
    """Where the rule's runbook is (the heading ``## <rule>`` of docs/alerting.md)."""
    return RUNBOOK.format(anchor=rule.lower())


@dataclass(frozen=True)
class Finding:
    """A condition that holds now: what the alert row of ``key`` must say."""

    key: str
    rule: str
    summary: str
    reading: dict[str, Any]

    @property
    def severity(self) -> str:
        return RULES[self.rule]


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)  # "<alert id>:<phase>:<channel>"
    failed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # channels waiting out a rate limit
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvaluationReport:
    evaluated: list[str] = field(default_factory=list)
    firing: list[str] = field(default_factory=list)
    raised: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the conditions ---------------------------------------------------------------------------------------------------


def _session_open_for(now: datetime, seconds: float) -> bool:
    """Whether the options session (regular open to options close, per the exchange calendar) has been open for at
    least ``seconds``: a feed whose last frame is from yesterday is not stale at 09:30:01."""
    session = calendar.session_for(calendar.market_day(now))
    if session is None:
        return False
    return session.open + timedelta(seconds=seconds) <= now < session.options_close


def _feed_findings(now: datetime) -> list[Finding]:
    from apps.ingestion.feeds import UW_REST

    findings = []
    for reading in selectors.feed_readings():
        threshold = settings.UW_REST_STALE_SECONDS if reading.feed == UW_REST else settings.FEED_STALE_SECONDS
        if not reading.in_use or reading.paused or not _session_open_for(now, threshold):
            continue
        if reading.age_seconds is not None and reading.age_seconds <= threshold:
            continue
        last = "never (no frame known)" if reading.last_frame_at is None else f"{reading.age_seconds:.0f} s ago"
        findings.append(
            Finding(
                key=f"feed_stale:{reading.feed}",
                rule="FeedStale",
                summary=f"{reading.feed} feed stale: last frame {last} (threshold {threshold} s, market open)",
                reading={
                    "feed": reading.feed,
                    "age_seconds": reading.age_seconds,
                    "last_frame_at": reading.last_frame_at.isoformat() if reading.last_frame_at else None,
                    "threshold_seconds": threshold,
                },
            )
        )
    return findings


def _canary_findings() -> list[Finding]:
    threshold = settings.WORKER_STALLED_SECONDS
    findings = []
    for reading in selectors.canary_readings():
        # Only a canary that was sent and has waited: no canary sent (beat down, or a replay) is not a stalled worker.
        if reading.pending_seconds is None or reading.pending_seconds <= threshold:
            continue
        consumed = f"{reading.age_seconds:.0f} s ago" if reading.age_seconds is not None else "never"
        findings.append(
            Finding(
                key=f"worker_stalled:{reading.queue}",
                rule="WorkerStalled",
                summary=(
                    f"no worker consumes the {reading.queue} queue: its canary has waited "
                    f"{reading.pending_seconds:.0f} s (threshold {threshold} s; last consumed {consumed})"
                ),
                reading={
                    "queue": reading.queue,
                    "pending_seconds": reading.pending_seconds,
                    "canary_age_seconds": reading.age_seconds,
                    "threshold_seconds": threshold,
                },
            )
        )
    return findings


def _redis_memory_finding(used: int, maxmemory: int) -> Finding | None:
    if maxmemory > 0:
        ratio = used / maxmemory
        if ratio <= settings.REDIS_MEMORY_ALERT_RATIO:
            return None
        words = (
            f"{ratio:.0%} of maxmemory ({used} of {maxmemory} bytes; threshold {settings.REDIS_MEMORY_ALERT_RATIO:.0%})"
        )
    else:
        if used <= settings.REDIS_MEMORY_ALERT_BYTES:
            return None
        words = f"{used} bytes with no maxmemory (threshold {settings.REDIS_MEMORY_ALERT_BYTES} bytes)"
    return Finding(
        key="redis_memory",
        rule="RedisMemoryHigh",
        summary=f"Redis memory high: {words}; noeviction refuses writes (the broker too) when full",
        reading={"used_bytes": used, "maxmemory_bytes": maxmemory},
    )


def conditions_check(*, now: datetime) -> tuple[list[Finding], set[str]]:
    """Every condition that holds now, and the rules that could be evaluated (their readings were available)."""
    snapshot = selectors.health_snapshot()
    findings: list[Finding] = []
    evaluated: set[str] = set()

    if snapshot.kill_switch_on is not None:
        evaluated.add("KillSwitchTripped")
        if snapshot.kill_switch_on:
            findings.append(
                Finding("kill_switch", "KillSwitchTripped", "kill switch engaged: no new entries are taken", {})
            )

    if settings.BROKER != "ib":
        evaluated.add("IBDisconnected")  # the paper broker runs in process: an alert left open from IB days resolves
    elif snapshot.redis_ok:
        evaluated.add("IBDisconnected")
        if not snapshot.trading_broker_ok:
            findings.append(
                Finding(
                    "ib_disconnected",
                    "IBDisconnected",
                    f"Interactive Brokers not connected: {snapshot.trading_broker_detail} (risk is reduce-only)",
                    {"detail": snapshot.trading_broker_detail},
                )
            )

    if snapshot.broker_ok and snapshot.queue_depths:
        evaluated.add("QueueBacklog")
        threshold = settings.QUEUE_BACKLOG_THRESHOLD
        for queue, depth in snapshot.queue_depths.items():
            if depth >= threshold:
                findings.append(
                    Finding(
                        f"queue_backlog:{queue}",
                        "QueueBacklog",
                        f"{depth} messages wait in the {queue} queue (threshold {threshold})",
                        {"queue": queue, "depth": depth, "threshold": threshold},
                    )
                )

    if snapshot.database_ok:
        evaluated.add("DeadLettersGrowing")
        window = settings.DEAD_LETTERS_ALERT_WINDOW_SECONDS
        count = selectors.dead_letters_since(since=now - timedelta(seconds=window))
        if count >= settings.DEAD_LETTERS_ALERT_THRESHOLD:
            findings.append(
                Finding(
                    "dead_letters",
                    "DeadLettersGrowing",
                    f"{count} task run(s) failed in the last {window // 60} min (admin: Operations > Dead letters)",
                    {"count": count, "window_seconds": window},
                )
            )

    if snapshot.redis_ok:
        memory = selectors.redis_memory()
        if memory is not None:
            evaluated.add("RedisMemoryHigh")
            finding = _redis_memory_finding(*memory)
            if finding is not None:
                findings.append(finding)
        evaluated.add("WorkerStalled")
        findings.extend(_canary_findings())
        if snapshot.database_ok:
            evaluated.add("FeedStale")
            findings.extend(_feed_findings(now))

    return findings, evaluated


# --- the rows ---------------------------------------------------------------------------------------------------------


def alert_open_or_refresh(
    *, key: str, rule: str, severity: str, summary: str, detail: dict[str, Any], source: str, now: datetime
) -> tuple[Alert, bool]:
    """The open alert of ``key`` refreshed (``last_seen_at``, summary, severity, detail merged), or a new one.

    Returns the row and whether it was created.  Delivery bookkeeping in ``detail["notified"]`` is kept as it is.
    """
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(key=key, resolved_at__isnull=True).first()
        if alert is None:
            alert = Alert.objects.create(
                key=key,
                rule=rule,
                severity=severity,
                source=source,
                summary=summary[:300],
                detail=dict(detail),
                raised_at=now,
                last_seen_at=now,
            )
            return alert, True
        alert.last_seen_at = now
        alert.summary = summary[:300]
        alert.severity = severity
        alert.detail = {**alert.detail, **detail}
        alert.save(update_fields=["last_seen_at", "summary", "severity", "detail"])
        return alert, False


def alert_resolve(*, alert_id: int, now: datetime, detail: dict[str, Any] | None = None) -> bool:
    """Resolve an open alert: a resolution notice becomes owed (``delivered_at`` cleared).  False when it was
    resolved already."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id, resolved_at__isnull=True).first()
        if alert is None:
            return False
        alert.resolved_at = now
        alert.delivered_at = None
        alert.delivery_error = ""
        if detail:
            alert.detail = {**alert.detail, **detail}
        alert.save(update_fields=["resolved_at", "delivered_at", "delivery_error", "detail"])
        return True


def findings_apply(findings: Iterable[Finding], *, evaluated: set[str], now: datetime) -> tuple[list[str], list[str]]:
    """Open or refresh a platform alert per finding; resolve the open platform alerts of the evaluated rules that
    no finding names any more.  Returns the keys raised and resolved."""
    raised: list[str] = []
    firing: set[str] = set()
    for finding in findings:
        firing.add(finding.key)
        alert, created = alert_open_or_refresh(
            key=finding.key,
            rule=finding.rule,
            severity=finding.severity,
            summary=finding.summary,
            detail={"reading": finding.reading},
            source=Alert.Source.PLATFORM,
            now=now,
        )
        if created:
            raised.append(alert.key)
            logger.warning("alert raised: %s", alert.summary, extra={"alert": alert.key, "rule": alert.rule})
    resolved = []
    stale = (
        Alert.objects.filter(source=Alert.Source.PLATFORM, resolved_at__isnull=True, rule__in=evaluated)
        .exclude(key__in=firing)
        .values_list("pk", "key")
    )
    for pk, key in list(stale):
        if alert_resolve(alert_id=pk, now=now):
            resolved.append(key)
            logger.info("alert resolved: %s", key, extra={"alert": key})
    return raised, resolved


# --- delivery ---------------------------------------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """A channel did not take a notice; ``retry_after`` (seconds) when it asked us to wait (429)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _ny(moment: datetime) -> str:
    return moment.astimezone(calendar.NEW_YORK).strftime("%Y-%m-%d %H:%M:%S %Z")


def notice_text(alert: Alert) -> str:
    """The notice of the alert's current state, plain text for both channels (well under both size limits)."""
    where = f"key {alert.key} · {alert.source}"
    if alert.resolved_at is None:
        lines = [
            f"ALERT [{alert.severity.upper()}] {alert.rule}: {alert.summary}",
            f"raised {_ny(alert.raised_at)} · {where}",
        ]
    else:
        lasted = int((alert.resolved_at - alert.raised_at).total_seconds())
        lines = [
            f"RESOLVED {alert.rule}: {alert.summary}",
            f"raised {_ny(alert.raised_at)}, resolved {_ny(alert.resolved_at)} (after {lasted} s) · {where}",
        ]
    url = (
        (alert.detail.get("annotations") or {}).get("runbook_url") if alert.source == Alert.Source.ALERTMANAGER else ""
    )
    lines.append(f"runbook: {url or runbook(alert.rule)}")
    return "\n".join(lines)[:1900]


def _telegram_send(text: str) -> float | None:
    from telegram import Bot
    from telegram.error import RetryAfter, TelegramError

    from apps.approvals.telegram.outbox import retry_after_seconds

    root = (settings.TELEGRAM_BASE_URL or DEFAULT_TELEGRAM_ROOT).rstrip("/")

    async def send() -> None:
        bot = Bot(settings.TELEGRAM_BOT_TOKEN, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot")
        async with bot:
            await bot.send_message(chat_id=settings.OPS_ALERT_TELEGRAM_CHAT_ID, text=text)

    try:
        asyncio.run(send())
    except RetryAfter as error:
        raise DeliveryFailed(f"telegram: rate limited ({error})", retry_after=retry_after_seconds(error)) from error
    except TelegramError as error:
        raise DeliveryFailed(f"telegram: {type(error).__name__}: {error}") from error
    return None  # Telegram says nothing about its limits until a 429


def _discord_send(text: str) -> float | None:
    from apps.distribution.discord.transport import TransportError, webhook_send

    try:
        delivery = webhook_send(url=settings.OPS_ALERT_DISCORD_WEBHOOK_URL, payload={"content": text})
    except TransportError as error:
        status = f" ({error.status_code})" if error.status_code else ""
        raise DeliveryFailed(f"discord: {error}{status}", retry_after=error.retry_after) from error
    # Discord's bucket is empty: the next send would be a 429, so wait for its reset instead.
    return delivery.reset_after if delivery.remaining == 0 else None


def delivery_channels() -> dict[str, Callable[[str], float | None]]:
    """The operators' channels configured here, by name.  Each sends one text and returns how long to wait before
    its next send (None: no need to wait), or raises ``DeliveryFailed``."""
    channels: dict[str, Callable[[str], float | None]] = {}
    if settings.OPS_ALERT_TELEGRAM_CHAT_ID and settings.TELEGRAM_BOT_TOKEN:
        channels[TELEGRAM] = _telegram_send
    if settings.OPS_ALERT_DISCORD_WEBHOOK_URL:
        channels[DISCORD] = _discord_send
    return channels


def _phase(alert: Alert) -> str:
    return RESOLVED if alert.resolved_at is not None else RAISED


def _notified(alert: Alert, phase: str) -> dict[str, str]:
    return dict((alert.detail.get("notified") or {}).get(phase) or {})


def _mark_sent(*, alert_id: int, phase: str, channel: str, now: datetime) -> None:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert_id)
        notified = dict(alert.detail.get("notified") or {})
        notified[phase] = {**(notified.get(phase) or {}), channel: now.isoformat()}
        alert.detail = {**alert.detail, "notified": notified}
        alert.save(update_fields=["detail"])


def _settle(*, alert_id: int, channels: Iterable[str], errors: list[str], now: datetime) -> None:
    """``delivered_at`` once the row's current phase reached every channel; else the errors of this attempt."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert_id)
        if set(channels) <= set(_notified(alert, _phase(alert))):
            alert.delivered_at, alert.delivery_error = now, ""
        else:
            alert.delivery_error = "; ".join(errors)[:2000] or "not yet sent to every channel"
        alert.save(update_fields=["delivered_at", "delivery_error"])


def _held(client: redis.Redis, channel: str) -> bool:
    return bool(client.exists(HOLD_KEY.format(channel=channel)))


def _hold(client: redis.Redis, channel: str, seconds: float) -> None:
    client.set(HOLD_KEY.format(channel=channel), "1", px=max(1, int(seconds * 1000)))


def notices_deliver(*, now: datetime) -> DeliveryReport:
    """Send every notice owed (oldest first, ``DELIVERY_BATCH`` at most).  Call under the alerts lock.

    A channel that fails is not tried again in the same run (an outage would otherwise cost one timeout per notice);
    the next run tries it again."""
    report = DeliveryReport()
    channels = delivery_channels()
    if not channels:
        report.skipped = "no delivery channel configured"
        return report
    client = store.get_redis()
    failing: set[str] = set()
    owed = list(Alert.objects.filter(delivered_at__isnull=True).order_by("raised_at", "id")[:DELIVERY_BATCH])
    for alert in owed:
        phase = _phase(alert)
        done = _notified(alert, phase)
        errors = []
        text = notice_text(alert)
        for name, send in channels.items():
            if name in done:
                continue
            if name in failing:
                errors.append(f"{name}: not tried, it failed earlier in this run")
                continue
            if _held(client, name):
                errors.append(f"{name}: rate limited, waiting")
                if name not in report.held:
                    report.held.append(name)
                continue
            try:
                wait = send(text)
            except DeliveryFailed as exc:
                failing.add(name)
                errors.append(str(exc))
                report.failed.append(f"{alert.pk}:{phase}:{name}")
                logger.error("alert %s not delivered to %s (tried again next run): %s", alert.key, name, exc)
                if exc.retry_after is not None:
                    _hold(client, name, exc.retry_after)
                continue
            _mark_sent(alert_id=alert.pk, phase=phase, channel=name, now=clock.now())
            report.sent.append(f"{alert.pk}:{phase}:{name}")
            if wait:
                _hold(client, name, wait)
        _settle(alert_id=alert.pk, channels=channels, errors=errors, now=clock.now())
    return report


# --- the entry points -------------------------------------------------------------------------------------------------


def _lock_acquire(client: redis.Redis) -> str | None:
    """Take the alerts lock (``SET NX`` with an expiry, so a crashed holder frees it); the token proves ownership."""
    token = uuid.uuid4().hex
    return token if client.set(LOCK_KEY, token, nx=True, ex=LOCK_SECONDS) else None


def _lock_release(client: redis.Redis, token: str) -> None:
    """Free the lock only if it is still ours (WATCH, not a Lua script: the embedded in-process store has no Lua)."""
    with client.pipeline() as pipe:
        try:
            pipe.watch(LOCK_KEY)
            if pipe.get(LOCK_KEY) != token:
                # It outlived LOCK_SECONDS and another run may hold it now: that run finishes its own work.
                logger.warning("alerts: the lock expired before the run ended")
                return
            pipe.multi()
            pipe.delete(LOCK_KEY)
            pipe.execute()
        except redis.WatchError:
            logger.warning("alerts: the lock changed hands while it was being released")


def alerts_evaluate() -> EvaluationReport:
    """One evaluation: conditions → rows → notices.  Skipped on a simulated clock (a replay has no live platform to
    alert about, and its notices would reach real operators) and while another evaluation holds the lock."""
    report = EvaluationReport()
    if clock.is_simulated():
        report.skipped = "simulated clock (replay)"
        return report
    client = store.get_redis()
    token = _lock_acquire(client)
    if token is None:
        report.skipped = "another evaluation is running"
        return report
    try:
        now = clock.now()
        findings, evaluated = conditions_check(now=now)
        report.evaluated = sorted(evaluated)
        report.firing = sorted(f.key for f in findings)
        report.raised, report.resolved = findings_apply(findings, evaluated=evaluated, now=now)
        report.delivery = notices_deliver(now=now)
    finally:
        _lock_release(client, token)
    return report


def alerts_deliver() -> DeliveryReport:
    """Deliver what is owed now (after Alertmanager's webhook), unless an evaluation is running: it delivers too."""
    client = store.get_redis()
    token = _lock_acquire(client)
    if token is None:
        return DeliveryReport(skipped="an evaluation is running; it delivers")
    try:
        return notices_deliver(now=clock.now())
    finally:
        _lock_release(client, token)
