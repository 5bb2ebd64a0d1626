"""Shared fixtures: the real PostgreSQL (pytest-django's test database) and the real Redis, flushed per test."""

from __future__ import annotations

import pytest
from django.conf import settings

from apps.core import clock, store
from tradingplatform.celery import app as celery_app


@pytest.fixture(autouse=True)
def _eager_celery():
    """Unit and integration tests run the pipeline in-process; tests that start real workers say so."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def redis_store():
    """The platform's Redis (real when REDIS_URL is set), empty at the start of each test."""
    store.reset_client()
    client = store.get_redis()
    client.flushdb()
    yield client
    client.flushdb()
    store.reset_client()


@pytest.fixture(autouse=True)
def _wall_clock():
    clock.use_wall_clock()
    yield
    clock.use_wall_clock()


@pytest.fixture
def requires_real_services():
    if not settings.DATABASE_IS_POSTGRES or not settings.REDIS_URL:
        pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL")
