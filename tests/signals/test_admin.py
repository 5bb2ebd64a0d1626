import json

import pytest

from apps.signals.models import StrategyConfig
from apps.signals.services import strategy_config_current

pytestmark = pytest.mark.django_db


def test_saving_a_strategy_config_in_the_admin_stores_a_new_version(admin_client):
    first = strategy_config_current(strategy="moc")
    parameters = {**first.parameters, "entry_cutoff": "15:45"}
    response = admin_client.post(
        f"/admin/signals/strategyconfig/{first.pk}/change/",
        {"strategy": "moc", "parameters": json.dumps(parameters), "enabled": "on", "note": "tighter deadline"},
    )
    assert response.status_code == 302
    versions = list(StrategyConfig.objects.filter(strategy="moc").order_by("version").values_list("version", flat=True))
    assert versions == [1, 2]
    assert StrategyConfig.objects.get(strategy="moc", version=1).parameters["entry_cutoff"] == "15:50"
    assert StrategyConfig.objects.get(strategy="moc", version=2).parameters["entry_cutoff"] == "15:45"


def test_signal_and_snapshot_lists_render_for_the_operator(admin_client):
    assert admin_client.get("/admin/signals/signal/?strategy__exact=zero_dte").status_code == 200
    assert admin_client.get("/admin/analytics/analyticssnapshot/").status_code == 200
