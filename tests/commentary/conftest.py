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
