"""The dashboard in a real browser (Debian's chromium driven by Playwright) against the live Django server: an operator
signs in through the admin's login form, watches the figures and charts fill in, pauses a feed, trips and clears the
kill switch and acknowledges an alert; a colleague without the permissions sees the controls disabled and is refused
when posting them anyway.  The pages are saved as screenshots for people to look at (``var/artifacts/dashboard.png``
and ``admin_index.png``, or in ``$TEST_ARTIFACTS_DIR``)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from apps.execution.models import Trade
from apps.ingestion.feeds import feed_is_paused
from apps.ops.models import Alert, AuditLog
from apps.risk.selectors import kill_switch_is_on
from tests.ops.dashboard_seed import (
    OPERATOR_PERMISSIONS,
    chart_samples,
    listener_report,
    open_position,
    staff_user,
    unacknowledged_alert,
)
from tests.risk.factories import SignalFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "pw-dashboard"
WAIT_MS = 10_000


def artifacts_dir() -> Path:
    directory = Path(os.environ.get("TEST_ARTIFACTS_DIR") or settings.BASE_DIR / "var" / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    # Playwright's sync API keeps an event loop on this thread, which makes Django refuse ORM calls here; the test's
    # own reads and writes are plain synchronous code (the server answers from its own thread).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
            # Inside sync_playwright the test runs in a greenlet with its own context variables, hence its own
            # database connection: closed here, or the test database could not be dropped at the end of the run.
            connections.close_all()


def signed_in(browser: Browser, base_url: str, username: str) -> tuple[BrowserContext, Page]:
    """A fresh browser session signed in through the admin's own login form, on the admin index."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, base_url=base_url)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    # Every confirm() of a control is answered yes: the test means to press the button.
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#ops-headline")).to_be_visible()
    return context, page


def signed_out(context: BrowserContext) -> None:
    """Stop the page's polling (leave the page) before closing, so no request is still in the server at the end."""
    for page in context.pages:
        page.goto("about:blank")
    context.close()


def open_dashboard(page: Page) -> None:
    page.click("#ops-dashboard-link")
    expect(page).to_have_url(re.compile(r"/admin/ops/dashboard/$"))
    # The figures come from the script's own poll, not only from the embedded snapshot.
    page.wait_for_function("() => Number(document.getElementById('ops-dashboard').dataset.polls) >= 1")


def test_an_operator_runs_the_console_from_the_dashboard_and_a_colleague_without_permissions_cannot(
    live_server, browser, settings
):
    settings.DASHBOARD_REFRESH_SECONDS = 1
    operator = staff_user("operator", permissions=OPERATOR_PERMISSIONS, password=PASSWORD)
    watcher = staff_user("watcher", password=PASSWORD)
    assert not operator.is_superuser
    listener_report(rate=42.5, channels=("flow-alerts", "price:SPY", "option_trades"))
    trade = open_position(mark="1.45", entry="1.20", quantity=2)
    stale = unacknowledged_alert(rule="FeedStale", key="feed_stale:uw_stream")
    backlog = unacknowledged_alert(
        rule="QueueBacklog",
        key="queue_backlog:analytics",
        summary="analytics: 1,240 tasks waiting",
        severity="warning",
    )
    chart_samples(count=30)
    waiting = SignalFactory()  # a signal risk has not decided yet

    context, page = signed_in(browser, live_server.url, operator.username)
    headline = page.locator("#ops-headline").text_content() or ""
    page.screenshot(path=str(artifacts_dir() / "admin_index.png"), full_page=True)
    assert "Kill switch" in headline and "Unacknowledged alerts" in headline

    open_dashboard(page)
    expect(page.locator("#kpi-ingest .ops-kpi-value")).to_have_text("127.5 /s")
    expect(page.locator("#kpi-pnl .ops-kpi-value")).to_have_text("$50.00")
    expect(page.locator(f'tr[data-trade-id="{trade.pk}"]')).to_contain_text(trade.option_symbol)
    expect(page.locator("#kpi-alerts .ops-kpi-value")).to_have_text("2")
    for chart in ("chart-pnl", "chart-ingest", "chart-queues"):
        expect(page.locator(f"#{chart} canvas")).to_have_count(1)

    # Pause the UW socket feed: the flag the listener obeys is set, and the page says so.
    uw_row = page.locator('tr[data-feed="uw_stream"]')
    uw_row.locator('button[data-control="feed_pause"]').click()
    expect(uw_row.locator(".feed-state")).to_have_text("paused")
    assert feed_is_paused("uw_stream")
    expect(uw_row.locator('button[data-control="feed_resume"]')).to_be_enabled()

    # Trip the kill switch, then clear it.
    page.fill("#kill-reason", "browser drill")
    page.click("#kill-engage")
    expect(page.locator("#kill-switch-state")).to_have_text("ENGAGED")
    expect(page.locator("#kpi-kill-switch .ops-kpi-value")).to_have_text("ENGAGED")
    assert kill_switch_is_on()
    page.fill("#kill-reason", "drill over")
    page.click("#kill-release")
    expect(page.locator("#kill-switch-state")).to_have_text("off")
    assert not kill_switch_is_on()

    # Acknowledge the stale-feed alert: it leaves the list with the operator's name on it.
    page.locator(f'tr[data-alert-id="{stale.pk}"] button[data-control="alert_acknowledge"]').click()
    expect(page.locator(f'tr[data-alert-id="{stale.pk}"]')).to_have_count(0)
    expect(page.locator("#ops-message")).to_contain_text("acknowledged")
    assert Alert.objects.get(pk=stale.pk).acknowledged_by == operator.username
    # With only a warning left open and a feed paused, the page says so without crying wolf.
    expect(page.locator("#ops-overall")).to_have_text("needs a look")
    expect(page.locator(f'tr[data-signal-id="{waiting.signal_id}"]')).to_contain_text(waiting.option_symbol)

    page.screenshot(path=str(artifacts_dir() / "dashboard.png"), full_page=True)
    signed_out(context)

    # A colleague without the permissions: every control disabled, and a forced POST refused with nothing changed.
    context, page = signed_in(browser, live_server.url, watcher.username)
    open_dashboard(page)
    for selector in ("#kill-engage", "#kill-release", "#flatten-all", "#flush-latest", "#flush-analytics"):
        expect(page.locator(selector)).to_be_disabled()
    expect(page.locator('tr[data-feed="uw_stream"] button[data-control="feed_resume"]')).to_be_disabled()
    expect(page.locator('tr[data-feed="uw_rest"] button[data-control="feed_pause"]')).to_be_disabled()
    expect(page.locator(f'tr[data-alert-id="{backlog.pk}"] button[data-control="alert_acknowledge"]')).to_be_disabled()
    expect(page.locator(f'tr[data-trade-id="{trade.pk}"] button[data-control="position_close"]')).to_be_disabled()
    for name in ("signal_approve", "signal_reject"):
        expect(page.locator(f'tr[data-signal-id="{waiting.signal_id}"] button[data-control="{name}"]')).to_be_disabled()

    token = page.locator("#kill-form input[name=csrfmiddlewaretoken]").input_value()
    forced = [
        {"control": "feed_resume", "feed": "uw_stream"},
        {"control": "feed_pause", "feed": "uw_rest"},
        {"control": "kill_switch_engage", "reason": "not mine to pull"},
        {"control": "flatten_all"},
        {"control": "caches_flush", "pattern": "latest"},
        {"control": "alert_acknowledge", "alert_id": str(backlog.pk)},
        {"control": "position_close", "trade_id": str(trade.pk)},
    ]
    for form in forced:
        answer = page.request.post(
            "/admin/ops/dashboard/control/",
            form={**form, "csrfmiddlewaretoken": token},
            headers={"Accept": "application/json", "X-CSRFToken": token},
        )
        assert answer.status == 403, (form, answer.status, answer.text())
        assert answer.json()["message"].startswith("Refused"), form
    signed_out(context)

    assert feed_is_paused("uw_stream") and not feed_is_paused("uw_rest")
    assert not kill_switch_is_on()
    assert Alert.objects.get(pk=backlog.pk).acknowledged_at is None
    assert Trade.objects.get(pk=trade.pk).status == Trade.Status.OPEN
    refused = AuditLog.objects.filter(actor=watcher.username, action__startswith="control.")
    assert refused.count() == len(forced)
    assert {entry.detail["outcome"] for entry in refused} == {"refused"}
