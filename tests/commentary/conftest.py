"""Commentary fixtures: the Anthropic stand-in and the settings that point the real SDK at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.core.standins.anthropic import AnthropicStandin


@pytest.fixture
def anthropic_api() -> Iterator[AnthropicStandin]:
    standin = AnthropicStandin().start()
    yield standin
    standin.stop()


@pytest.fixture
def claude(settings, anthropic_api):
    settings.ANTHROPIC_API_KEY = "sk-ant-test-standin"
    settings.ANTHROPIC_BASE_URL = anthropic_api.base_url
    settings.ANTHROPIC_MODEL = "claude-haiku-4-5"
    return anthropic_api


@pytest.fixture
def no_api_key(settings):
    settings.ANTHROPIC_API_KEY = ""
    settings.ANTHROPIC_BASE_URL = ""


@pytest.fixture
def approver(db):
    """A person who may approve what is published (the permission the approvals app checks)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username="approver", password="unused-in-tests")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="approvals", codename="decide_approvalrequest")
    )
    return get_user_model().objects.get(pk=user.pk)  # fresh: permissions are cached per instance


@pytest.fixture
def bystander(db):
    """A logged-in person without the approval permission."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="bystander", password="unused-in-tests")


@pytest.fixture
def discord_tiers(db):
    """The Discord tiers in force (premium now, standard +60 s, free +300 s), without webhooks."""
    from tests.distribution.conftest import tiers_configure

    tiers_configure({})
