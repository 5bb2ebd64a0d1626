"""The social queue in the admin: read-only rows, and re-queuing failed posts only with the permission, audited."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.ops.models import AuditLog
from apps.social import services
from apps.social.models import SocialPost
from tests.social.conftest import HOLD, advance, closed_trade, decide

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:social_socialpost_changelist"


@pytest.fixture
def failed_post(x_api, approver, django_capture_on_commit_callbacks):
    x_post = services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)[0]
    with django_capture_on_commit_callbacks(execute=True):
        decide(x_post, user=approver)
    advance(HOLD.total_seconds())
    x_api.fail(401)  # a revoked token: permanent
    assert services.post_publish(post_id=x_post.pk) == "failed"
    return x_post


def staff(client, *, codenames: tuple[str, ...]):
    user = get_user_model().objects.create_user("staffer", password="pw-not-secret-789", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="social"))
    client.force_login(user)
    return client


def test_a_failed_post_is_requeued_by_someone_with_the_permission_then_published(
    client, failed_post, x_api, django_capture_on_commit_callbacks
):
    operator = staff(client, codenames=("view_socialpost", "requeue_socialpost"))

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(
            reverse(CHANGELIST), {"action": "requeue_failed", "_selected_action": [failed_post.pk]}
        )

    assert response.status_code == 302
    failed_post.refresh_from_db()
    assert (failed_post.status, failed_post.failures) == (SocialPost.Status.PUBLISHED, 0)
    assert len(x_api.tweets) == 1
    [entry] = AuditLog.objects.filter(action="social.requeue")
    assert (entry.actor, entry.target) == ("admin:staffer", f"social:{failed_post.pk}")
    assert "X refused the tweet" in entry.detail["last_error"]


def test_without_the_permission_the_requeue_action_is_not_offered(client, failed_post):
    viewer = staff(client, codenames=("view_socialpost",))

    page = viewer.get(reverse(CHANGELIST))
    response = viewer.post(reverse(CHANGELIST), {"action": "requeue_failed", "_selected_action": [failed_post.pk]})

    assert page.status_code == 200 and b"requeue_failed" not in page.content
    failed_post.refresh_from_db()
    assert failed_post.status == SocialPost.Status.FAILED
    assert response.status_code == 200  # the admin answers "no action selected"
    assert not AuditLog.objects.filter(action="social.requeue").exists()


def test_a_post_refused_for_its_approval_cannot_be_requeued(x_api):
    x_post = services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)[0]
    SocialPost.objects.filter(pk=x_post.pk).update(status=SocialPost.Status.APPROVED, next_attempt_at=None)
    assert services.post_publish(post_id=x_post.pk) == "refused"

    assert services.posts_requeue_failed(post_ids=[x_post.pk], actor="admin:someone") == []
    x_post.refresh_from_db()
    assert x_post.status == SocialPost.Status.FAILED
    assert x_api.requests == []


def test_the_admin_shows_a_post_read_only(client, failed_post):
    viewer = staff(client, codenames=("view_socialpost",))

    page = viewer.get(reverse("admin:social_socialpost_change", args=[failed_post.pk]))

    assert page.status_code == 200
    assert b'name="text"' not in page.content
