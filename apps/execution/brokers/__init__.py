"""Broker adapters behind one interface (``base.Broker``); ``get_broker()`` picks the one ``settings.BROKER`` names."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.execution.brokers.base import Broker


def get_broker() -> Broker:
    if settings.BROKER == "paper":
        from apps.execution.brokers.paper import PaperBroker

        return PaperBroker()
    if settings.BROKER == "ib":
        from apps.execution.brokers.ib import IBBroker

        return IBBroker()
    raise ImproperlyConfigured(f"BROKER={settings.BROKER!r} is not a known broker (paper, ib)")
