"""Alertmanager's webhook (payload version 4) turned into ``Alert`` rows with ``source=alertmanager``.

Prometheus evaluates ``docker/prometheus/alerts.yml``, Alertmanager groups and routes, and its one receiver posts
here.  Each alert of a payload is keyed by its name and fingerprint (``alertmanager:<alertname>:<fingerprint>``): a
firing alert opens that row or refreshes it (Alertmanager repeats firing alerts every ``repeat_interval``), a resolved
one resolves it.  Notices go out the same way as the platform's own alerts (``apps.ops.alerts``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from apps.core import clock
from apps.ops.alerts import alert_open_or_refresh, alert_resolve
from apps.ops.models import Alert

SEVERITIES = {choice.value for choice in Alert.Severity}


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook payload of version 4."""


@dataclass
class PayloadReport:
    raised: list[int] = field(default_factory=list)
    refreshed: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    ignored: int = 0  # resolved alerts with no open row (resolved already, or never seen firing)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(labels: dict[str, str], fingerprint: str) -> str:
    if not fingerprint:
        # Alertmanager always sends one; without it the label set identifies the alert just as well.
        fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    return f"alertmanager:{labels.get('alertname', 'unnamed')}:{fingerprint}"[:200]


def _alerts_of(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object")
    if str(payload.get("version")) != "4":
        raise PayloadError(f"unsupported payload version {payload.get('version')!r} (expected 4)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("'alerts' must be a list")
    for alert in alerts:
        if not isinstance(alert, dict) or alert.get("status") not in ("firing", "resolved"):
            raise PayloadError("each alert needs a status, firing or resolved")
        if not isinstance(alert.get("labels"), dict) or not isinstance(alert.get("annotations", {}), dict):
            raise PayloadError("each alert needs labels (and annotations, when given) as objects")
    return alerts


def payload_apply(payload: Any) -> PayloadReport:
    """Open, refresh or resolve one row per alert of ``payload``; raises ``PayloadError`` before writing anything
    when the payload is not version 4.  Idempotent: the same payload twice refreshes the same rows."""
    alerts = _alerts_of(payload)
    report = PayloadReport()
    now = clock.now()
    for item in alerts:
        labels = {str(k): str(v) for k, v in item["labels"].items()}
        annotations = {str(k): str(v) for k, v in (item.get("annotations") or {}).items()}
        key = _key(labels, str(item.get("fingerprint") or ""))
        if item["status"] == "firing":
            severity = labels.get("severity", "")
            alert, created = alert_open_or_refresh(
                key=key,
                rule=labels.get("alertname", "unnamed")[:100],
                severity=severity if severity in SEVERITIES else Alert.Severity.WARNING,
                summary=annotations.get("summary") or annotations.get("description") or labels.get("alertname", key),
                detail={
                    "labels": labels,
                    "annotations": annotations,
                    "starts_at": item.get("startsAt"),
                    "generator_url": item.get("generatorURL"),
                    "receiver": payload.get("receiver"),
                },
                source=Alert.Source.ALERTMANAGER,
                now=now,
            )
            (report.raised if created else report.refreshed).append(alert.pk)
            continue
        open_id = Alert.objects.filter(key=key, resolved_at__isnull=True).values_list("pk", flat=True).first()
        if open_id is not None and alert_resolve(alert_id=open_id, now=now, detail={"ends_at": item.get("endsAt")}):
            report.resolved.append(open_id)
        else:
            report.ignored += 1
    return report
