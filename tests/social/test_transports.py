"""The X and Reddit transports against the stand-ins: which answers are permanent, which are waited out, and what
the stand-ins check of the requests."""

from __future__ import annotations

import time

import pytest

from apps.core.standins.social import RedditStandin, Scripted, XStandin
from apps.social.delivery import TransportError
from apps.social.reddit import transport as reddit
from apps.social.x import transport as x
from tests.social.conftest import REDDIT, SUBREDDIT, USER_AGENT, X_TOKEN


@pytest.fixture
def account(reddit_api: RedditStandin) -> reddit.RedditAccount:
    return reddit.RedditAccount(
        **REDDIT,
        user_agent=USER_AGENT,
        auth_base_url=reddit_api.base_url,
        api_base_url=reddit_api.base_url,
        timeout=5.0,
    )


def tweet(standin: XStandin, text: str, token: str = X_TOKEN):
    return x.tweet_create(base_url=standin.base_url, token=token, text=text, timeout=5.0)


def test_x_creates_the_tweet_and_answers_its_id(x_api):
    published = tweet(x_api, "A closed trade. Automated trade log, not investment advice.")

    assert published.status_code == 201
    assert published.external_id == x_api.tweets[0]["id"]
    assert x_api.requests[0].body == {"text": "A closed trade. Automated trade log, not investment advice."}


@pytest.mark.parametrize(
    ("text", "token", "status"),
    [("x" * 281, X_TOKEN, 400), ("fine text", "someone-elses-token", 401)],
)
def test_x_refusals_of_the_text_or_the_token_are_permanent(x_api, text, token, status):
    with pytest.raises(TransportError) as caught:
        tweet(x_api, text, token)

    assert (caught.value.permanent, caught.value.status_code, caught.value.retry_after) == (True, status, None)
    assert x_api.tweets == []


def test_x_refuses_the_same_text_twice_as_duplicate_content(x_api):
    tweet(x_api, "Same words.")

    with pytest.raises(TransportError) as caught:
        tweet(x_api, "Same words.")

    assert caught.value.permanent and caught.value.status_code == 403
    assert "duplicate content" in str(caught.value)


def test_an_x_429_waits_for_retry_after_or_else_until_the_reset_instant(x_api):
    x_api.rate_limit(retry_after=7)
    x_api.rate_limit(reset_at=int(time.time()) + 90)

    with pytest.raises(TransportError) as first:
        tweet(x_api, "one")
    with pytest.raises(TransportError) as second:
        tweet(x_api, "two")

    assert (first.value.permanent, first.value.retry_after) == (False, 7.0)
    assert second.value.retry_after is not None and 85 < second.value.retry_after <= 90


def test_an_x_server_error_or_no_answer_is_transient(x_api, social_settings):
    x_api.fail(503)
    with pytest.raises(TransportError) as server:
        tweet(x_api, "one")
    x_api.stop()
    with pytest.raises(TransportError) as unreachable:
        tweet(x_api, "two")

    assert (server.value.permanent, server.value.status_code) == (False, 503)
    assert not unreachable.value.permanent and "unreachable" in str(unreachable.value)


def test_reddit_submits_a_self_post_with_the_bearer_token_and_user_agent(reddit_api, account):
    published = reddit.submit(account=account, subreddit=SUBREDDIT, title="A title", text="A body.")

    [submission] = reddit_api.submissions
    assert published.external_id == submission["name"] and submission["name"].startswith("t3_")
    [request] = reddit_api.requests_to("/api/submit")
    assert request.body == {"sr": SUBREDDIT, "kind": "self", "title": "A title", "text": "A body.", "api_type": "json"}
    assert request.headers["authorization"] == "bearer reddit-token-1"
    assert request.headers["user-agent"] == USER_AGENT


def test_a_wrong_reddit_password_is_a_permanent_token_failure(reddit_api, account):
    wrong = reddit.RedditAccount(**{**account.__dict__, "password": "wrong"})

    with pytest.raises(TransportError) as caught:
        reddit.access_token(account=wrong)

    assert caught.value.permanent and "invalid_grant" in str(caught.value)


def test_reddit_refuses_a_generic_user_agent(reddit_api, account):
    generic = reddit.RedditAccount(**{**account.__dict__, "user_agent": "python-requests/2.34"})

    with pytest.raises(TransportError) as caught:
        reddit.submit(account=generic, subreddit=SUBREDDIT, title="t", text="b")

    assert caught.value.permanent and caught.value.status_code == 403
    assert reddit_api.submissions == []


def test_reddits_posting_limit_in_json_errors_is_waited_out_not_failed(reddit_api, account):
    reddit_api.refuse("RATELIMIT", "Looks like you've been doing that a lot. Take a break for 5 minutes.", "ratelimit")

    with pytest.raises(TransportError) as caught:
        reddit.submit(account=account, subreddit=SUBREDDIT, title="t", text="b")

    assert (caught.value.permanent, caught.value.retry_after) == (False, 300.0)


def test_a_reddit_429_waits_for_retry_after_or_the_reset_seconds(reddit_api, account):
    reddit_api.rate_limit(reset_in=42)

    with pytest.raises(TransportError) as caught:
        reddit.submit(account=account, subreddit=SUBREDDIT, title="t", text="b")

    assert (caught.value.permanent, caught.value.status_code, caught.value.retry_after) == (False, 429, 42.0)


def test_a_token_reddit_refuses_twice_is_a_permanent_failure(reddit_api, account):
    unauthorized = Scripted(401, {"message": "Unauthorized", "error": 401})
    reddit_api.script("/api/submit", unauthorized, unauthorized)

    with pytest.raises(TransportError) as caught:
        reddit.submit(account=account, subreddit=SUBREDDIT, title="t", text="b")

    assert caught.value.permanent and caught.value.status_code == 401
    assert len(reddit_api.token_requests()) == 2
