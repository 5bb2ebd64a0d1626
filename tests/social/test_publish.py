"""Publishing: only what an authorized person approved goes out, exactly once, mirrored to social_queue and
distribution_logs; refusals, expiries, rate limits and errors are handled as documented."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from apps.approvals import services as approvals
from apps.approvals.models import ApprovalAction
from apps.core import clock
from apps.distribution.models import DistributionLog
from apps.social import services, tasks
from apps.social.models import SocialPost
from tests.social.conftest import HOLD, SUBREDDIT, USER_AGENT, advance, closed_trade, decide

pytestmark = pytest.mark.django_db
Status = SocialPost.Status


@pytest.fixture
def drafts(x_api, reddit_api):
    """The X and Reddit drafts of one closed trade."""
    return services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)


def approve_all(posts, user, capture, **kwargs):
    with capture(execute=True):
        for post in posts:
            decide(post, user=user, **kwargs)


def logs(post):
    return list(DistributionLog.objects.filter(ref=f"social:{post.pk}").order_by("pk"))


def test_nothing_is_published_while_the_approval_is_pending(drafts, x_api, reddit_api):
    advance(HOLD.total_seconds() + 1)

    counts = tasks.social_publish_due()

    assert counts["published"] == 0
    assert x_api.requests == [] and reddit_api.requests == []
    assert set(SocialPost.objects.values_list("status", flat=True)) == {Status.PENDING_APPROVAL}


def test_an_authorized_approval_publishes_each_post_once_to_x_and_reddit(
    drafts, x_api, reddit_api, approver, django_capture_on_commit_callbacks
):
    x_post, reddit_post = drafts
    approve_all(drafts, approver, django_capture_on_commit_callbacks)
    assert SocialPost.objects.get(pk=x_post.pk).status == Status.APPROVED
    assert x_api.requests == []  # held back until the free tier has the exit

    advance(HOLD.total_seconds())
    assert tasks.social_publish_due()["published"] == 2
    assert tasks.social_publish_due()["published"] == 0

    assert [t["text"] for t in x_api.tweets] == [x_post.text]
    assert x_api.requests[0].headers["authorization"] == "Bearer x-user-context-token"
    [submission] = reddit_api.submissions
    assert (submission["sr"], submission["title"], submission["text"]) == (
        SUBREDDIT,
        reddit_post.title,
        reddit_post.text,
    )
    assert reddit_api.requests_to("/api/submit")[0].headers["user-agent"] == USER_AGENT
    x_post.refresh_from_db()
    reddit_post.refresh_from_db()
    assert (x_post.status, x_post.sink, x_post.external_id) == (Status.PUBLISHED, "api", x_api.tweets[0]["id"])
    assert x_post.external_url == f"https://x.com/i/web/status/{x_api.tweets[0]['id']}"
    assert x_post.approved_by == "telegram:1 (@approver)" and x_post.published_at is not None
    assert (reddit_post.status, reddit_post.external_id) == (Status.PUBLISHED, submission["name"])
    assert reddit_post.external_url.startswith(f"https://www.reddit.com/r/{SUBREDDIT}/comments/")
    [x_log] = logs(x_post)
    assert (x_log.channel, x_log.tier, x_log.outcome, x_log.status_code, x_log.sink) == ("x", "x", "sent", 201, "api")
    [reddit_log] = logs(reddit_post)
    assert (reddit_log.channel, reddit_log.tier, reddit_log.outcome) == ("reddit", f"r/{SUBREDDIT}", "sent")


def test_a_person_without_the_permission_is_refused_and_nothing_is_published(
    drafts, x_api, reddit_api, bystander, django_capture_on_commit_callbacks
):
    x_post, _ = drafts
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(approvals.NotAuthorized):
        decide(x_post, user=bystander, actor="telegram:2 (@bystander)")

    advance(HOLD.total_seconds() + 1)
    tasks.social_publish_due()

    x_post.refresh_from_db()
    assert x_post.status == Status.PENDING_APPROVAL
    assert x_api.requests == []
    assert ApprovalAction.objects.filter(actor="telegram:2 (@bystander)", allowed=False).count() == 1


def test_a_request_nobody_answers_expires_and_its_post_is_never_published(drafts, x_api, reddit_api):
    advance(3600)

    assert approvals.requests_expire_due() == 2
    advance(HOLD.total_seconds())
    tasks.social_publish_due()

    assert set(SocialPost.objects.values_list("status", flat=True)) == {Status.EXPIRED}
    assert x_api.requests == [] and reddit_api.requests == []


def test_the_edited_text_is_what_gets_published(drafts, x_api, approver, django_capture_on_commit_callbacks):
    x_post, _ = drafts
    edited = "SPY 600C closed at the target: +$128.70. Automated trade log, not investment advice."
    approve_all([x_post], approver, django_capture_on_commit_callbacks, text=edited)

    advance(HOLD.total_seconds())
    tasks.social_publish_due()

    assert [t["text"] for t in x_api.tweets] == [edited]
    x_post.refresh_from_db()
    assert (x_post.status, x_post.text) == (Status.PUBLISHED, edited)


def test_a_post_whose_request_is_not_approved_is_refused_even_if_its_row_says_approved(drafts, x_api):
    x_post, _ = drafts
    SocialPost.objects.filter(pk=x_post.pk).update(status=Status.APPROVED, next_attempt_at=None)

    assert services.post_publish(post_id=x_post.pk) == "refused"

    x_post.refresh_from_db()
    assert x_post.status == Status.FAILED and "pending" in x_post.last_error
    assert x_api.requests == []
    assert [log.outcome for log in logs(x_post)] == ["skipped"]


def test_an_x_rate_limit_is_waited_out_until_its_reset_then_published(
    drafts, x_api, approver, django_capture_on_commit_callbacks
):
    x_post, _ = drafts
    approve_all([x_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())
    x_api.rate_limit(reset_at=int(time.time()) + 40)

    assert tasks.social_publish_due()["rate_limited"] == 1
    x_post.refresh_from_db()
    assert x_post.status == Status.APPROVED
    assert timedelta(seconds=38) < x_post.next_attempt_at - clock.now() <= timedelta(seconds=40)
    advance(30)
    assert tasks.social_publish_due()["published"] == 0
    assert len(x_api.requests) == 1
    advance(11)
    assert tasks.social_publish_due()["published"] == 1

    assert len(x_api.requests) == 2 and len(x_api.tweets) == 1
    x_post.refresh_from_db()
    assert (x_post.status, x_post.attempts) == (Status.PUBLISHED, 2)
    assert [log.outcome for log in logs(x_post)] == ["rate_limited", "sent"]


def test_a_reddit_rate_limit_holds_every_reddit_post_for_its_retry_after(
    x_api, reddit_api, approver, django_capture_on_commit_callbacks
):
    first = services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)[1]
    second = services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)[1]
    approve_all([first, second], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())
    reddit_api.rate_limit(retry_after=120)

    counts = tasks.social_publish_due()

    assert (counts["rate_limited"], counts["published"]) == (1, 0)
    assert len(reddit_api.requests_to("/api/submit")) == 1  # the second post did not draw another 429
    advance(119)
    assert tasks.social_publish_due()["published"] == 0
    advance(1)
    assert tasks.social_publish_due()["published"] == 2
    assert len(reddit_api.submissions) == 2


def test_a_permanent_refusal_marks_the_post_failed_and_it_is_not_retried(
    drafts, x_api, approver, django_capture_on_commit_callbacks
):
    x_post, _ = drafts
    approve_all([x_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())
    x_api.duplicate()

    assert tasks.social_publish_due()["failed"] == 1
    advance(86_400)
    assert tasks.social_publish_due() == dict.fromkeys(services.PublishCounts().as_dict(), 0)

    x_post.refresh_from_db()
    assert x_post.status == Status.FAILED and "duplicate content" in x_post.last_error
    assert len(x_api.requests) == 1
    [log] = logs(x_post)
    assert (log.outcome, log.status_code) == ("failed", 403)


def test_a_reddit_json_error_is_a_permanent_failure(drafts, reddit_api, approver, django_capture_on_commit_callbacks):
    _, reddit_post = drafts
    approve_all([reddit_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())
    reddit_api.refuse("SUBREDDIT_NOTALLOWED", "you aren't allowed to post there.", "sr")

    assert services.post_publish(post_id=reddit_post.pk) == "failed"

    reddit_post.refresh_from_db()
    assert reddit_post.status == Status.FAILED
    assert reddit_post.last_error == "Reddit refused the post: SUBREDDIT_NOTALLOWED you aren't allowed to post there."


def test_a_server_error_is_retried_after_a_backoff(drafts, x_api, approver, django_capture_on_commit_callbacks):
    x_post, _ = drafts
    approve_all([x_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())
    x_api.fail(503)

    assert tasks.social_publish_due()["retried"] == 1
    x_post.refresh_from_db()
    assert (x_post.status, x_post.failures) == (Status.APPROVED, 1)
    assert tasks.social_publish_due()["published"] == 0  # backing off
    advance(services.BACKOFF_BASE_SECONDS * 1.1 + 1)
    assert tasks.social_publish_due()["published"] == 1
    assert [log.outcome for log in logs(x_post)] == ["failed", "sent"]


def test_transient_errors_give_up_after_max_failures(drafts, x_api, approver, django_capture_on_commit_callbacks):
    x_post, _ = drafts
    approve_all([x_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())
    x_api.fail(502, times=services.MAX_FAILURES)

    for _ in range(services.MAX_FAILURES):
        tasks.social_publish_due()
        advance(services.BACKOFF_MAX_SECONDS * 1.1 + 1)

    x_post.refresh_from_db()
    assert (x_post.status, x_post.failures) == (Status.FAILED, services.MAX_FAILURES)
    assert len(x_api.requests) == services.MAX_FAILURES and x_api.tweets == []


def test_the_reddit_token_is_fetched_once_cached_and_fetched_again_after_a_401(
    x_api, reddit_api, approver, django_capture_on_commit_callbacks, redis_store
):
    posts = [services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)[1] for _ in range(3)]
    approve_all(posts, approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())

    assert services.post_publish(post_id=posts[0].pk) == "published"
    assert services.post_publish(post_id=posts[1].pk) == "published"
    assert len(reddit_api.token_requests()) == 1
    assert 0 < redis_store.ttl("social:reddit:token:tp_commentary_bot") <= 3600 - 60

    reddit_api.expire_tokens()
    assert services.post_publish(post_id=posts[2].pk) == "published"

    assert len(reddit_api.token_requests()) == 2
    assert [r.status for r in reddit_api.requests_to("/api/submit")] == [200, 200, 401, 200]
    assert len(reddit_api.submissions) == 3
    assert reddit_api.token_requests()[0].body == {
        "grant_type": "password",
        "username": "tp_commentary_bot",
        "password": "tp-bot-password",
    }


def test_wrong_reddit_app_credentials_fail_the_post_for_good(
    drafts, reddit_api, settings, approver, django_capture_on_commit_callbacks
):
    _, reddit_post = drafts
    settings.REDDIT_CLIENT_SECRET = "not-the-secret"
    approve_all([reddit_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())

    assert services.post_publish(post_id=reddit_post.pk) == "failed"
    assert reddit_api.requests_to("/api/submit") == []
    assert [r.status for r in reddit_api.token_requests()] == [401]


def test_a_half_configured_reddit_account_fails_instead_of_passing_for_published(
    drafts, reddit_api, settings, approver, django_capture_on_commit_callbacks
):
    _, reddit_post = drafts
    settings.REDDIT_PASSWORD = ""
    approve_all([reddit_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())

    assert services.post_publish(post_id=reddit_post.pk) == "failed"
    reddit_post.refresh_from_db()
    assert "REDDIT_PASSWORD missing" in reddit_post.last_error
    assert reddit_api.requests == []


def test_without_credentials_posts_go_to_the_local_sink(approver, django_capture_on_commit_callbacks, caplog):
    posts = services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)
    approve_all(posts, approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())

    with caplog.at_level("INFO", logger="apps.social.local_sink"):
        assert tasks.social_publish_due()["published"] == 2

    for post in posts:
        post.refresh_from_db()
        assert (post.status, post.sink, post.external_id) == (Status.PUBLISHED, "local", f"local-{post.pk}")
        assert [(log.outcome, log.sink) for log in logs(post)] == [("sent", "local")]
    assert sum("social local sink" in r.getMessage() for r in caplog.records) == 2


def test_a_publication_whose_worker_died_is_reclaimed_and_published(
    drafts, x_api, approver, django_capture_on_commit_callbacks
):
    x_post, _ = drafts
    approve_all([x_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())
    SocialPost.objects.filter(pk=x_post.pk).update(status=Status.PUBLISHING, claimed_at=advance(0), attempts=1)

    advance(services.PUBLISHING_TIMEOUT.total_seconds() - 1)
    assert tasks.social_publish_due()["reclaimed"] == 0
    advance(2)
    counts = tasks.social_publish_due()

    assert (counts["reclaimed"], counts["published"]) == (1, 1)
    assert len(x_api.tweets) == 1
    assert [log.outcome for log in logs(x_post)] == ["reclaimed", "sent"]


def test_a_reclaimed_tweet_that_x_calls_a_duplicate_had_gone_out_and_counts_as_published(
    drafts, x_api, approver, django_capture_on_commit_callbacks
):
    x_post, _ = drafts
    approve_all([x_post], approver, django_capture_on_commit_callbacks)
    advance(HOLD.total_seconds())
    SocialPost.objects.filter(pk=x_post.pk).update(status=Status.PUBLISHING, claimed_at=advance(0), attempts=1)
    x_api.tweets.append({"id": "1", "text": x_post.text})  # the lost attempt did reach X
    advance(services.PUBLISHING_TIMEOUT.total_seconds() + 1)

    assert tasks.social_publish_due()["published"] == 1

    x_post.refresh_from_db()
    assert x_post.status == Status.PUBLISHED
    assert [r.status for r in x_api.requests] == [403]


def test_a_rejected_post_is_never_published(drafts, x_api, approver, django_capture_on_commit_callbacks):
    x_post, _ = drafts
    approve_all([x_post], approver, django_capture_on_commit_callbacks, decision="reject")
    advance(HOLD.total_seconds())

    tasks.social_publish_due()

    x_post.refresh_from_db()
    assert x_post.status == Status.REJECTED
    assert x_api.requests == []


def test_the_social_tasks_route_to_the_distribution_queue_and_the_sweep_is_declared():
    from apps.social.schedules import PERIODIC_TASKS
    from tradingplatform.celery import app

    for task in (tasks.social_publish, tasks.social_publish_due):
        assert app.amqp.router.route({}, task.name)["queue"].name == "distribution"
    assert [d["task"] for d in PERIODIC_TASKS] == ["distribution.social_publish_due"]


def test_a_published_post_observes_its_lag_behind_the_hold_in_tp_delivery_lag_seconds(
    drafts, x_api, reddit_api, approver, django_capture_on_commit_callbacks
):
    from prometheus_client import REGISTRY

    def observed(platform: str) -> tuple[float, float]:
        labels = {"channel": platform, "tier": "social"}
        return (
            REGISTRY.get_sample_value("tp_delivery_lag_seconds_count", labels) or 0.0,
            REGISTRY.get_sample_value("tp_delivery_lag_seconds_sum", labels) or 0.0,
        )

    before = {platform: observed(platform) for platform in ("x", "reddit")}
    approve_all(drafts, approver, django_capture_on_commit_callbacks)

    advance(HOLD.total_seconds() + 20)  # the sweep runs 20 s after the posts were allowed out
    assert tasks.social_publish_due()["published"] == 2

    for platform in ("x", "reddit"):
        count, total = observed(platform)
        assert count - before[platform][0] == 1
        assert total - before[platform][1] == pytest.approx(20, abs=1)
