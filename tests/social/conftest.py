"""Social queue fixtures: X and Reddit stand-ins on loopback, approvers with and without the permission, closed
trades and approved reports, and the platform clock under the test's control."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from apps.approvals import services as approvals
from apps.core import clock
from apps.core.standins.social import RedditStandin, XStandin
from tests.distribution.rows import signal_row, trade_row

# Friday 2026-11-20, 15:30 New York: a trade closed during the session.
NOW = datetime(2026, 11, 20, 20, 30, tzinfo=UTC)
TIERS = (("premium", 0), ("standard", 60), ("free", 300))
HOLD = timedelta(seconds=300)  # the slowest tier's delay: no social post goes out before it
X_TOKEN = "x-user-context-token"
REDDIT = dict(
    client_id="tp-script-app",
    client_secret="tp-script-secret",
    username="tp_commentary_bot",
    password="tp-bot-password",
)
SUBREDDIT = "tp_options_log"
USER_AGENT = "linux:tradingplatform-tests:1.0 (by /u/tp_commentary_bot)"


@pytest.fixture(autouse=True)
def platform_clock() -> Iterator[None]:
    clock.set_simulated(NOW)
    yield
    clock.use_wall_clock()


def advance(seconds: float) -> datetime:
    return clock.advance_to(clock.now() + timedelta(seconds=seconds))


@pytest.fixture(autouse=True)
def social_settings(settings):
    settings.SOCIAL_PLATFORMS = ("x", "reddit")
    settings.DISTRIBUTION_TIERS = TIERS
    settings.APPROVAL_TTL_SECONDS = 3600
    settings.SOCIAL_HTTP_TIMEOUT_SECONDS = 5.0
    settings.X_ACCESS_TOKEN = ""
    for name in ("CLIENT_ID", "CLIENT_SECRET", "USERNAME", "PASSWORD", "SUBREDDIT"):
        setattr(settings, f"REDDIT_{name}", "")
    return settings


@pytest.fixture
def x_api(social_settings) -> Iterator[XStandin]:
    standin = XStandin(token=X_TOKEN).start()
    social_settings.X_API_BASE_URL = standin.base_url
    social_settings.X_ACCESS_TOKEN = X_TOKEN
    yield standin
    standin.stop()


@pytest.fixture
def reddit_api(social_settings) -> Iterator[RedditStandin]:
    standin = RedditStandin(
        client_id=REDDIT["client_id"],
        client_secret=REDDIT["client_secret"],
        username=REDDIT["username"],
        password=REDDIT["password"],
        subreddits=(SUBREDDIT,),
    ).start()
    social_settings.REDDIT_AUTH_BASE_URL = standin.base_url
    social_settings.REDDIT_API_BASE_URL = standin.base_url
    social_settings.REDDIT_CLIENT_ID = REDDIT["client_id"]
    social_settings.REDDIT_CLIENT_SECRET = REDDIT["client_secret"]
    social_settings.REDDIT_USERNAME = REDDIT["username"]
    social_settings.REDDIT_PASSWORD = REDDIT["password"]
    social_settings.REDDIT_SUBREDDIT = SUBREDDIT
    social_settings.REDDIT_USER_AGENT = USER_AGENT
    yield standin
    standin.stop()


@pytest.fixture
def approver(db):
    user = get_user_model().objects.create_user("approver", password="pw-not-secret-123")
    user.user_permissions.add(
        Permission.objects.get(codename="decide_approvalrequest", content_type__app_label="approvals")
    )
    return get_user_model().objects.get(pk=user.pk)  # fresh: the permission cache is per instance


@pytest.fixture
def bystander(db):
    return get_user_model().objects.create_user("bystander", password="pw-not-secret-456")


def closed_trade(**extra):
    """A 0DTE call bought at 1.25 and sold at 1.90 on its profit target: +$128.70 after fees."""
    signal = signal_row(at=NOW - timedelta(hours=2))
    values = dict(
        status="closed",
        exit_price=Decimal("1.90"),
        exit_at=NOW,
        exit_reason="target",
        realized_pnl=Decimal("128.70"),
        fees=Decimal("1.30"),
    )
    values.update(extra)
    return trade_row(signal=signal, at=NOW - timedelta(hours=2), **values)


def approved_report(content: str, *, status: str = "approved"):
    from apps.commentary.models import AiReport

    return AiReport.objects.create(
        kind="post_market",
        day=NOW.date(),
        model="template",
        is_template=True,
        content=content,
        status=status,
        created_at=NOW,
        updated_at=NOW,
    )


def decide(post, *, user, decision: str = "approve", text: str | None = None, actor: str = "telegram:1 (@approver)"):
    return approvals.request_decide(
        request_id=post.approval_id,
        decision=decision,
        user=user,
        channel="telegram",
        actor=actor,
        text=text,
    )
