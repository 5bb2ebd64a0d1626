from __future__ import annotations

import pytest
from django.urls import reverse

from apps.ops.services import audit_record, dead_letter_record

pytestmark = pytest.mark.django_db


def test_dead_letters_are_listed_and_shown_in_the_admin_but_cannot_be_added_or_edited(admin_client):
    letter = dead_letter_record(
        task_name="risk.review", task_id="t-1", args=["sig-1"], kwargs={}, exception=ValueError("no quote")
    )

    listing = admin_client.get(reverse("admin:ops_deadletter_changelist"))
    detail = admin_client.get(reverse("admin:ops_deadletter_change", args=[letter.pk]))

    assert listing.status_code == 200 and b"risk.review" in listing.content
    assert detail.status_code == 200 and b"ValueError: no quote" in detail.content
    assert b'name="_save"' not in detail.content
    assert admin_client.get(reverse("admin:ops_deadletter_add")).status_code == 403


def test_the_audit_log_is_listed_in_the_admin_and_cannot_be_deleted(admin_client):
    entry = audit_record(actor="alice", action="kill_switch.on", target="risk", detail={"reason": "drill"})

    listing = admin_client.get(reverse("admin:ops_auditlog_changelist"))

    assert listing.status_code == 200 and b"kill_switch.on" in listing.content
    assert admin_client.get(reverse("admin:ops_auditlog_delete", args=[entry.pk])).status_code == 403
