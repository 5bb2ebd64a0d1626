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

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target}".strip()
