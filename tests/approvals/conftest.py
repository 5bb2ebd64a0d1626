"""Approvals fixtures: people with and without the permissions, a recording handler for social posts, and the
Telegram bot running in-process against the Telegram stand-in."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections

from apps.approvals import services
from apps.approvals.models import ApprovalRequest, TelegramIdentity
from apps.approvals.telegram.bot import ApproverBot, BotConfig
from apps.core.standins.telegram import TelegramStandin

CHAT = -1001234567890  # the approver group
OTHER_CHAT = -1009999999999


def wait(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def person(username: str, *permissions: str, telegram_id: int | None = None, active: bool = True):
    """A Django user holding ``permissions`` ("app.codename"), linked to ``telegram_id`` when given."""
    user = get_user_model().objects.create_user(username, f"{username}@example.org", "pw-not-secret-123")
    for dotted in permissions:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    if telegram_id is not None:
        TelegramIdentity.objects.create(telegram_user_id=telegram_id, user=user, label=f"@{username}", active=active)
    return get_user_model().objects.get(pk=user.pk)  # fresh: permissions are cached per instance


def social_request(subject_id: int = 1, *, text: str = "SPY calls flow heavy into the close.", **kwargs):
    return services.request_open(
        subject_type="social_post", subject_id=subject_id, title=f"X post {subject_id}", text=text, **kwargs
    )


@dataclass
class HandlerCalls:
    approved: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)


@pytest.fixture
def social_handler() -> Iterator[HandlerCalls]:
    """Stands for the social app's reactions (publication after approval); the real one is put back afterwards."""
    calls = HandlerCalls()
    previous = services._handlers.get("social_post")

    def approved(request: ApprovalRequest) -> None:
        calls.approved.append(request.pk)
        calls.texts[request.pk] = request.text

    services.handler_register(
        "social_post",
        on_approved=approved,
        on_rejected=lambda request: calls.rejected.append(request.pk),
        on_expired=lambda request: calls.expired.append(request.pk),
    )
    yield calls
    if previous is None:
        services._handlers.pop("social_post", None)
    else:
        services._handlers["social_post"] = previous


@pytest.fixture
def telegram() -> Iterator[TelegramStandin]:
    standin = TelegramStandin().start()
    yield standin
    standin.stop()


class BotThread:
    """The bot's event loop in a thread, the way ``manage.py telegram_bot`` runs it, stopped like SIGTERM does."""

    def __init__(self, config: BotConfig) -> None:
        self.config = config
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.bot = ApproverBot(self.config)
        self.ready.set()
        try:
            await self.bot.run(stop=self._stop)
        except BaseException as error:
            self.error = error
            raise

    def start(self) -> BotThread:
        self._thread.start()
        assert self.ready.wait(10)
        return self

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the bot did not stop"
        # The ORM ran in asgiref's worker thread: close its connections so the test database can be dropped.
        asyncio.run(sync_to_async(connections.close_all)())
        assert self.error is None, repr(self.error)


@pytest.fixture
def approver_chat(settings) -> int:
    settings.TELEGRAM_APPROVER_CHAT_ID = str(CHAT)
    return CHAT


@pytest.fixture
def bot(telegram, approver_chat) -> Iterator[BotThread]:
    config = BotConfig(
        token=telegram.token,
        api_root=telegram.api_root,
        chat_id=str(approver_chat),
        poll_timeout=1,
        outbox_interval=0.2,
        min_send_interval=0,
    )
    runner = BotThread(config).start()
    yield runner
    runner.stop()
