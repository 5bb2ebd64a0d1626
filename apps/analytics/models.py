"""Derived analytics: one snapshot per ticker, strategy bucket and market-data instant (``analytics_snapshots``)."""

from __future__ import annotations

from django.db import models

from apps.signals.models import Bucket


class AnalyticsSnapshot(models.Model):
    """The features one bucket's strategy reads, computed at ``as_of`` (market-data time), with a data confidence.

    ``features`` is the payload of a schema-versioned event (``analytics.snapshot``); ``(ticker, bucket, as_of)`` is
    the natural key, so recomputing the same instant yields the same row.
    """

    ticker = models.CharField(max_length=12)
    bucket = models.CharField(max_length=8, choices=Bucket.choices)
    as_of = models.DateTimeField()
    schema_version = models.PositiveSmallIntegerField()
    event_id = models.CharField(max_length=32, blank=True)
    features = models.JSONField(default=dict)
    confidence = models.DecimalField(max_digits=6, decimal_places=4)
    created_at = models.DateTimeField()  # platform clock

    class Meta:
        db_table = "analytics_snapshots"
        constraints = [
            models.UniqueConstraint(fields=["ticker", "bucket", "as_of"], name="analytics_snapshot_unique"),
        ]
        indexes = [models.Index(fields=["ticker", "as_of"])]

    def __str__(self) -> str:
        return f"{self.ticker} {self.bucket} @ {self.as_of:%Y-%m-%d %H:%M:%S}"
