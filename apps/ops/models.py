"""Operations records: failed task runs (dead letters) and who did what (audit log)."""

from __future__ import annotations

from django.db import models


class DeadLetter(models.Model):
    """One failed run of a Celery task, kept so a broken link of the pipeline never disappears silently.

    A stage enqueues the next one after commit; if that next task fails, nothing downstream happens and nothing else
    would remember the event.  The row carries what is needed to understand and re-send it.
    """

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64, db_index=True)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    exception = models.TextField()
    traceback = models.TextField(blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "ops_dead_letters"
        ordering = ("-at", "-id")
        verbose_name = "dead letter"

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}] at {self.at:%Y-%m-%d %H:%M:%S}"


class AuditLog(models.Model):
    """One operator or system action (kill switch flipped, schedule changed, approval given), append-only."""

    actor = models.CharField(max_length=150, db_index=True)
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict)
    at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "ops_audit_log"
        ordering = ("-at", "-id")
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        # Controls (apps/ops/controls.py) owned by no other model: deleting the latest:* or analytics:* caches.
        permissions = [("flush_caches", "Can flush the latest:* and analytics:* caches")]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target}".strip()


class Alert(models.Model):
    """One operator alert: a condition that fired (feed stale, kill switch tripped, queue backlog...), from the
    platform's own evaluator (``source=platform``) or from Prometheus through Alertmanager (``source=alertmanager``).

    ``key`` names the condition and its subject (``feed_stale:uw_stream``); at most one row per key is open (not
    resolved) at a time, so a condition that keeps firing updates ``last_seen_at`` instead of piling up rows.  A
    person acknowledges an alert (who and when are kept); a resolved alert stays for the record.
    """

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class Source(models.TextChoices):
        PLATFORM = "platform"
        ALERTMANAGER = "alertmanager"

    key = models.CharField(max_length=200, db_index=True)
    rule = models.CharField(max_length=100, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.PLATFORM)
    summary = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)
    raised_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_error = models.TextField(blank=True)

    class Meta:
        db_table = "ops_alerts"
        ordering = ("-raised_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(resolved_at__isnull=True), name="ops_alert_one_open"
            )
        ]
        indexes = [
            models.Index(
                fields=["raised_at"], condition=models.Q(acknowledged_at__isnull=True), name="ops_alert_unacked"
            )
        ]
        permissions = [("acknowledge_alert", "Can acknowledge alerts")]

    def __str__(self) -> str:
        state = "resolved" if self.resolved_at else ("acknowledged" if self.acknowledged_at else "open")
        return f"[{self.severity}] {self.summary} ({state})"
