"""Two workers publishing the same approved post at once (real PostgreSQL transactions, real threads): it goes out
once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from apps.social import services, tasks
from apps.social.models import SocialPost
from tests.social.conftest import HOLD, advance, closed_trade, decide


@pytest.mark.django_db(transaction=True)
def test_concurrent_publish_tasks_publish_the_post_once(x_api, reddit_api, approver, requires_real_services):
    posts = services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)
    for post in posts:
        decide(post, user=approver)  # commits: the enqueued publication runs and finds the post held back
    assert x_api.requests == [] and reddit_api.requests == []
    advance(HOLD.total_seconds())
    x_api.delay_seconds = reddit_api.delay_seconds = 0.3  # keep the first claim in flight while the others arrive
    start = threading.Barrier(8)
    outcomes: list[str | None] = []
    errors: list[BaseException] = []

    def worker(post_id: int, sweep: bool) -> None:
        try:
            start.wait()
            if sweep:
                tasks.social_publish_due()
            else:
                outcomes.append(tasks.social_publish(post_id))
        except BaseException as exc:  # noqa: BLE001 (reported to the test thread)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(post.pk, n % 2 == 1)) for post in posts for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(x_api.requests) == 1 and len(x_api.tweets) == 1
    assert len(reddit_api.requests_to("/api/submit")) == 1 and len(reddit_api.submissions) == 1
    assert set(SocialPost.objects.values_list("status", flat=True)) == {SocialPost.Status.PUBLISHED}
    assert SocialPost.objects.filter(attempts=1).count() == 2
