"""Trade explanations: the evidence gathered for a trade, Claude citing it (checked), the template without a key."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from apps.approvals.models import ApprovalRequest
from apps.commentary import services
from apps.commentary.models import AiCall, AiExplanation
from apps.core import clock, store
from tests.commentary.evidence import CHECKS, ENTRY_AT, EVIDENCE_IDS, entered_trade

pytestmark = pytest.mark.django_db

CITING_ANSWER = (
    "The zero_dte strategy bought SPY calls after three call sweeps above the ask [S1], led by $1.8M of premium "
    "[F1] and $640k more [F2]. Dealer gamma was negative [G1], with the biggest gamma at the 600 strike [G2]. Risk "
    "approved 2 contracts at up to $1.30 [R1].\nAutomated commentary, not investment advice."
)


@pytest.fixture(autouse=True)
def _after_the_entry():
    clock.set_simulated(ENTRY_AT + timedelta(seconds=5))


def _summary(trade_id: int) -> dict:
    raw = store.get_redis().hget(services.EXPLANATIONS_KEY, str(trade_id))
    assert raw is not None, f"no {services.EXPLANATIONS_KEY} entry for trade {trade_id}"
    return json.loads(raw)


def test_evidence_is_the_signal_the_biggest_flow_before_it_the_gex_levels_and_the_risk_decision():
    from apps.commentary.selectors import explanation_evidence

    entered = entered_trade()

    evidence = explanation_evidence(trade_id=entered.trade.pk)

    assert evidence is not None
    items = {item["id"]: item for item in evidence["items"]}
    assert list(items) == EVIDENCE_IDS
    signal = items["S1"]
    assert (signal["strategy"], signal["rule"], signal["direction"], signal["confidence"]) == (
        "zero_dte",
        "sweep_cluster_above_ask",
        "bullish",
        "0.7250",
    )
    assert signal["features"] == {"sweep_count": 3, "ask_side_share": "0.91"}
    assert "Three call sweeps" in signal["rationale"]
    assert [items[f"F{n}"]["total_premium"] for n in (1, 2, 3)] == ["1800000.00", "640000.00", "250000.00"]
    assert [items[f"F{n}"]["named_by_signal"] for n in (1, 2, 3)] == [True, False, False]
    assert items["G1"]["kind"] == "gex_snapshot" and items["G1"]["gamma_oi"] == "-5000000.000000"
    assert [items[f"G{n}"]["strike"] for n in (2, 3, 4)] == ["600.000000", "595.000000", "605.000000"]
    risk = items["R1"]
    assert (risk["approved"], risk["quantity"], risk["limit_price"]) == (True, 2, "1.300000")
    assert risk["checks"] == CHECKS and risk["account"]["net_liq"] == "100000.00"
    assert evidence["trade"]["id"] == entered.trade.pk and evidence["trade"]["entry_price"] == "1.250000"
    json.dumps(evidence)


def test_claude_explains_the_trade_citing_its_evidence_and_the_call_is_accounted(
    claude, django_capture_on_commit_callbacks
):
    entered = entered_trade()
    claude.text = CITING_ANSWER

    with django_capture_on_commit_callbacks(execute=True):
        explanation = services.explanation_generate(trade_id=entered.trade.pk)

    assert explanation.status == AiExplanation.Status.PENDING_APPROVAL
    assert explanation.content == CITING_ANSWER
    assert explanation.citations == ["S1", "F1", "F2", "G1", "G2", "R1"]
    assert explanation.unknown_citations == []
    assert [item["id"] for item in explanation.evidence["items"]] == EVIDENCE_IDS
    assert (explanation.input_tokens, explanation.output_tokens) == (1200, 350)
    assert explanation.cost_usd == Decimal("0.002950")
    assert explanation.model == "claude-haiku-4-5-20251001" and explanation.is_template is False

    (call,) = AiCall.objects.all()
    assert (call.purpose, call.ref, call.status, call.attempts) == ("explanation", f"trade:{entered.trade.pk}", "ok", 1)
    assert (call.input_tokens, call.output_tokens, call.cost_usd) == (1200, 350, Decimal("0.002950"))
    assert call.status_code is None and call.latency_ms >= 0

    (request,) = claude.requests
    assert "[S1], [F2], [G1], [R1]" in request.body["system"]
    header, sent = request.prompt.split("\n", 1)
    assert "S1, F1, F2, F3, G1, G2, G3, G4, R1" in header
    assert json.loads(sent) == explanation.evidence  # exactly what was stored is what Claude saw

    approval = ApprovalRequest.objects.get(subject_type="ai_explanation", subject_id=explanation.pk)
    assert approval.status == "pending" and approval.text == CITING_ANSWER
    assert _summary(entered.trade.pk) == {
        "explanation_id": explanation.pk,
        "status": "pending_approval",
        "citations": ["S1", "F1", "F2", "G1", "G2", "R1"],
        "is_template": False,
        "updated_at": explanation.updated_at.isoformat(),
    }


def test_an_answer_citing_an_id_that_is_not_in_the_evidence_is_asked_again_and_then_fails(
    claude, django_capture_on_commit_callbacks
):
    entered = entered_trade()
    claude.reply("Bought on sweeps [S1] and a news headline [N1].", "Bought on sweeps [S1] and dark pool prints [F9].")

    with django_capture_on_commit_callbacks(execute=True):
        explanation = services.explanation_generate(trade_id=entered.trade.pk)

    assert explanation.status == AiExplanation.Status.FAILED
    assert explanation.citations == ["S1", "F9"] and explanation.unknown_citations == ["F9"]
    assert "failed the citation check after 2 answers: it cites F9, which is not in the evidence" in explanation.error
    assert "not sent for approval" in explanation.error
    assert (explanation.input_tokens, explanation.output_tokens) == (2400, 700)  # both calls are paid for
    assert explanation.cost_usd == Decimal("0.005900")
    assert AiCall.objects.filter(purpose="explanation", status="ok").count() == 2
    first, second = claude.requests
    assert "not usable" not in first.prompt
    assert "it cites N1, which is not in the evidence" in second.prompt
    assert "the only ids that exist are: S1, F1, F2, F3, G1, G2, G3, G4, R1" in second.prompt
    assert not ApprovalRequest.objects.filter(subject_type="ai_explanation").exists()
    assert _summary(entered.trade.pk)["status"] == "failed"


def test_an_answer_citing_nothing_gets_one_stricter_retry_and_a_citing_answer_goes_to_approval(
    claude, django_capture_on_commit_callbacks
):
    entered = entered_trade()
    claude.reply("The strategy liked the flow.", CITING_ANSWER)

    with django_capture_on_commit_callbacks(execute=True):
        explanation = services.explanation_generate(trade_id=entered.trade.pk)

    assert explanation.status == AiExplanation.Status.PENDING_APPROVAL
    assert explanation.content == CITING_ANSWER and explanation.error == ""
    assert "it cites no evidence" in claude.requests[1].prompt
    assert ApprovalRequest.objects.filter(subject_type="ai_explanation", subject_id=explanation.pk).exists()


def test_a_failed_explanation_is_written_anew_when_asked_again(claude, django_capture_on_commit_callbacks):
    entered = entered_trade()
    claude.fail(500, 500, 500)

    failed = services.explanation_generate(trade_id=entered.trade.pk)
    claude.text = CITING_ANSWER
    with django_capture_on_commit_callbacks(execute=True):
        again = services.explanation_generate(trade_id=entered.trade.pk)

    assert failed.status == AiExplanation.Status.FAILED and "answered 500 after 3 attempts" in failed.error
    assert again.pk == failed.pk and again.status == AiExplanation.Status.PENDING_APPROVAL
    error_call, ok_call = AiCall.objects.order_by("pk")
    assert (error_call.status, error_call.status_code, error_call.attempts) == ("error", 500, 3)
    assert (error_call.input_tokens, error_call.cost_usd) == (0, None)
    assert ok_call.status == "ok"


def test_without_an_api_key_the_explanation_is_a_labelled_template_citing_every_item_it_uses(
    no_api_key, anthropic_api, django_capture_on_commit_callbacks
):
    entered = entered_trade()

    with django_capture_on_commit_callbacks(execute=True):
        explanation = services.explanation_generate(trade_id=entered.trade.pk)

    lines = explanation.content.splitlines()
    assert lines[0] == services.explanations.TEMPLATE_NOTICE and "no AI was used" in lines[0]
    assert explanation.is_template is True and explanation.model == "template"
    assert explanation.citations == EVIDENCE_IDS and explanation.unknown_citations == []
    assert (explanation.input_tokens, explanation.output_tokens, explanation.cost_usd) == (0, 0, None)
    assert any("$1800000.00 premium, sweep" in line and line.endswith("[F1]") for line in lines)
    assert any("3 of 3 checks passed" in line and line.endswith("[R1]") for line in lines)
    assert "Fri 2026-11-20 09:35 ET" in lines[1]
    assert anthropic_api.requests == [] and AiCall.objects.count() == 0
    assert explanation.status == AiExplanation.Status.PENDING_APPROVAL
    assert ApprovalRequest.objects.filter(subject_type="ai_explanation", subject_id=explanation.pk).exists()
    assert _summary(entered.trade.pk)["is_template"] is True


def test_the_template_says_what_evidence_is_missing_and_cites_only_what_exists(no_api_key):
    from tests.distribution.rows import signal_row, trade_row

    signal = signal_row(at=ENTRY_AT - timedelta(minutes=1))
    trade = trade_row(signal=signal, at=ENTRY_AT)

    explanation = services.explanation_generate(trade_id=trade.pk)

    assert explanation.citations == ["S1"]
    assert "no flow alerts on SPY since" in explanation.content
    assert "no GEX levels before the signal" in explanation.content
    assert "no risk decision is recorded" in explanation.content


def test_explain_trade_twice_writes_one_explanation_with_one_call(claude):
    from apps.commentary.tasks import explain_trade

    entered = entered_trade()
    claude.text = CITING_ANSWER

    first = explain_trade.delay(entered.trade.pk).get()
    second = explain_trade.delay(entered.trade.pk).get()

    assert first == second
    assert len(claude.requests) == 1 and AiExplanation.objects.count() == 1
    assert ApprovalRequest.objects.filter(subject_type="ai_explanation").count() == 1
    assert explain_trade.name == "commentary.explain_trade"


def test_explaining_a_trade_that_does_not_exist_is_an_error(claude):
    with pytest.raises(services.TradeNotFound, match="trade 987654 does not exist"):
        services.explanation_generate(trade_id=987654)
    assert claude.requests == []


@pytest.mark.parametrize(
    ("text", "citations"),
    [
        ("a [S1] b [F1, F2] c [g1; R1] d [S1]", ["S1", "F1", "F2", "G1", "R1"]),
        ("no brackets S1 F1", []),
        ("[note] and [x] and [S1-F2]", []),
        ("[X12]", ["X12"]),
    ],
)
def test_citations_are_parsed_from_bracketed_ids(text, citations):
    assert services.citations_parse(text) == citations
