"""The operations API: token auth, read-only tables behind view permissions (pages without COUNT), health, feeds,
and the controls with their own permissions (200 / 400 / 403, every attempt audited); the schema validates."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.ops.controls import CONTROLS
from apps.ops.models import AuditLog
from tests.ops.control_scenarios import SCENARIOS, operator
from tests.risk.conftest import _session_clock, committed
from tests.risk.factories import SignalFactory, ny

__all__ = ["_session_clock", "committed"]

pytestmark = pytest.mark.django_db


def token_for(user) -> str:
    out = StringIO()
    call_command("api_token", "--user", user.get_username(), stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


# --- authentication ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/signals/"),
        ("get", "/api/orders/"),
        ("get", "/api/health/"),
        ("get", "/api/feeds/"),
        ("get", "/api/controls/"),
        ("post", "/api/controls/kill_switch_engage/"),
    ],
)
def test_every_endpoint_needs_a_token(method, url, redis_store):
    response = getattr(APIClient(), method)(url, {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert redis_store.get("risk:kill_switch") is None
    assert not AuditLog.objects.filter(action__startswith="control.").exists()


def test_a_wrong_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert client.get("/api/signals/").status_code == 401


def test_api_token_creates_and_rotates_and_the_old_token_stops_working(django_user_model):
    user = operator(django_user_model, "olivia", "signals.view_signal")
    first = token_for(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.get("/api/signals/").status_code == 200

    second = token_for(user)

    assert second != first and len(second) == 40
    assert client.get("/api/signals/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert client.get("/api/signals/").status_code == 200
    assert [e.action for e in AuditLog.objects.filter(target="olivia").order_by("id")] == ["api.token.issue"] * 2


def test_api_token_refuses_unknown_and_inactive_users_and_revokes(django_user_model):
    user = operator(django_user_model, "olivia")
    token = token_for(user)
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("api_token", "--user", "nobody", stdout=StringIO())

    call_command("api_token", "--user", "olivia", "--revoke", stdout=StringIO(), stderr=StringIO())

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/controls/").status_code == 401
    user.is_active = False
    user.save()
    with pytest.raises(CommandError, match="not active"):
        call_command("api_token", "--user", "olivia", stdout=StringIO())


# --- tables -----------------------------------------------------------------------------------------------------------
READS = [
    ("/api/signals/", "signals.view_signal"),
    ("/api/risk-decisions/", "risk.view_riskdecision"),
    ("/api/orders/", "execution.view_order"),
    ("/api/positions/", "execution.view_position"),
    ("/api/trades/", "execution.view_trade"),
    ("/api/posts/", "distribution.view_distributionpost"),
    ("/api/reports/", "commentary.view_aireport"),
    ("/api/alerts/", "ops.view_alert"),
    ("/api/feeds/", "ingestion.view_streamcontrol"),
]


@pytest.mark.parametrize(("url", "permission"), READS)
def test_reading_a_table_needs_its_view_permission(url, permission, django_user_model):
    reader = api_as(operator(django_user_model, "reader", permission))
    stranger = api_as(operator(django_user_model, "stranger", *(p for _, p in READS if p != permission)))

    assert reader.get(url).status_code == 200
    assert stranger.get(url).status_code == 403


def test_signals_filter_by_ticker_status_and_date_and_page_without_counting(django_user_model):
    for n in range(5):
        SignalFactory(ticker="SPY", as_of=ny(10, n))
    SignalFactory(ticker="QQQ", as_of=ny(10, 30))
    SignalFactory(ticker="SPY", status="rejected", as_of=ny(11, 0))
    client = api_as(operator(django_user_model, "reader", "signals.view_signal"))

    with CaptureQueriesContext(connection) as queries:
        page = client.get("/api/signals/", {"ticker": "spy", "status": "pending", "limit": 3}).json()
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    assert set(page) == {"next", "previous", "results"}
    assert [s["as_of"] for s in page["results"]] == [ny(10, n).isoformat().replace("+00:00", "Z") for n in (4, 3, 2)]
    assert "offset=3" in page["next"]
    last = client.get(page["next"]).json()
    assert len(last["results"]) == 2 and last["next"] is None

    window = client.get("/api/signals/", {"since": ny(10, 30).isoformat(), "until": ny(12).isoformat()}).json()
    assert {(s["ticker"], s["status"]) for s in window["results"]} == {("QQQ", "pending"), ("SPY", "rejected")}
    assert client.get("/api/signals/", {"status": "bogus"}).status_code == 400
    assert client.get("/api/signals/", {"since": "yesterday"}).status_code == 400


def test_a_signal_is_retrieved_by_id(django_user_model):
    signal = SignalFactory()
    client = api_as(operator(django_user_model, "reader", "signals.view_signal"))

    body = client.get(f"/api/signals/{signal.pk}/").json()

    assert body["signal_id"] == signal.signal_id and body["limit_price"] == "1.200000"
    assert client.get("/api/signals/999999/").status_code == 404


# --- health and feeds -------------------------------------------------------------------------------------------------
def test_health_reports_the_snapshot_with_its_status_code(django_user_model, redis_store):
    client = api_as(operator(django_user_model, "watcher"))

    response = client.get("/api/health/")

    body = response.json()
    assert response.status_code == (200 if body["ok"] else 503)
    assert body["database_ok"] is True and body["redis_ok"] is True
    assert {"queue_depths", "canary_stale", "kill_switch_on"} <= set(body)


def test_feeds_show_who_paused_what(django_user_model, committed):
    from apps.ingestion.feeds import feed_pause_set

    with committed():
        feed_pause_set(feed="uw_rest", paused=True, actor="alice", reason="budget")
    client = api_as(operator(django_user_model, "watcher", "ingestion.view_streamcontrol"))

    rows = {row["feed"]: row for row in client.get("/api/feeds/").json()}

    assert set(rows) == {"uw_stream", "uw_rest", "ib_market"}
    assert (rows["uw_rest"]["paused"], rows["uw_rest"]["by"], rows["uw_rest"]["reason"]) == (True, "alice", "budget")
    assert rows["ib_market"]["paused"] is False


# --- controls ---------------------------------------------------------------------------------------------------------
def test_the_control_list_says_which_the_caller_may_run(django_user_model):
    client = api_as(operator(django_user_model, "olivia", "ingestion.pause_feed"))

    controls = {c["name"]: c for c in client.get("/api/controls/").json()}

    assert set(controls) == set(CONTROLS)
    assert {name for name, c in controls.items() if c["allowed"]} == {"feed_pause", "feed_resume"}
    assert controls["feed_pause"]["params"][0]["choices"] == ["uw_stream", "uw_rest", "ib_market"]


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_each_control_runs_through_the_api_with_its_permission(name, django_user_model, committed):
    client = api_as(operator(django_user_model, "olivia", CONTROLS[name].permission))
    scenario = SCENARIOS[name]("olivia")

    with committed():
        response = client.post(f"/api/controls/{name}/", scenario.params, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["ok"] is True
    assert scenario.done()
    entry = AuditLog.objects.get(action=f"control.{name}")
    assert (entry.actor, entry.detail["channel"], entry.detail["outcome"]) == ("olivia", "api", "ok")


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_each_control_is_refused_through_the_api_without_its_permission(name, django_user_model, committed):
    others = {c.permission for c in CONTROLS.values()} - {CONTROLS[name].permission}
    client = api_as(operator(django_user_model, "mallory", *others))
    scenario = SCENARIOS[name]("mallory")

    with committed():
        response = client.post(f"/api/controls/{name}/", scenario.params, format="json")

    assert response.status_code == 403
    assert response.json()["detail"] == f"{name} needs the permission {CONTROLS[name].permission}"
    assert scenario.untouched()
    entry = AuditLog.objects.get(action=f"control.{name}")
    assert (entry.actor, entry.detail["channel"], entry.detail["outcome"]) == ("mallory", "api", "refused")


def test_bad_control_parameters_are_a_400_with_the_reason(django_user_model):
    client = api_as(django_user_model.objects.create_superuser("root", password=None))

    unknown_feed = client.post("/api/controls/feed_pause/", {"feed": "nasdaq"}, format="json")
    not_an_object = client.post("/api/controls/feed_pause/", ["uw_rest"], format="json")
    missing = client.post("/api/controls/order_cancel/", {}, format="json")

    assert unknown_feed.status_code == 400
    assert unknown_feed.json()["detail"] == "unknown feed 'nasdaq': one of uw_stream, uw_rest, ib_market"
    assert not_an_object.status_code == 400
    assert missing.status_code == 400 and "order_cancel needs order_id" in missing.json()["detail"]
    assert client.post("/api/controls/launch_missiles/", {}, format="json").status_code == 404


# --- schema -----------------------------------------------------------------------------------------------------------
def test_the_schema_validates_without_warnings_and_describes_every_control(tmp_path: Path, django_user_model):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    schema = yaml.safe_load(target.read_text())
    for name, control in CONTROLS.items():
        operation = schema["paths"][f"/api/controls/{name}/"]["post"]
        assert control.permission in operation["description"]
        assert {"200", "400", "403"} <= set(operation["responses"])
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert set(schema["components"]["schemas"][ref].get("properties", {})) == {p.name for p in control.params}
    for path in ("/api/signals/", "/api/orders/", "/api/posts/", "/api/health/", "/api/alerts/", "/api/reports/"):
        assert "get" in schema["paths"][path]
    client = api_as(operator(django_user_model, "reader"))
    assert client.get("/api/schema/").status_code == 200
