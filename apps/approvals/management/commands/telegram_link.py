"""``manage.py telegram_link``: link a Telegram user id to a Django user (whose permissions then apply in the bot),
or deactivate the link."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.approvals.models import TelegramIdentity
from apps.approvals.services import Channel, action_record


class Command(BaseCommand):
    help = "Link a Telegram user id to a platform user for the Telegram bot (or --deactivate the link)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--telegram-id", type=int, required=True, help="the person's numeric Telegram user id")
        parser.add_argument("--user", help="the Django username whose permissions apply (needed to link)")
        parser.add_argument("--label", default="", help="e.g. the Telegram @username, for people reading the log")
        parser.add_argument("--deactivate", action="store_true", help="stop accepting anything from this Telegram id")

    def handle(self, *args: object, **options: object) -> None:
        telegram_id = int(options["telegram_id"])  # type: ignore[call-overload]
        label = str(options["label"] or "")
        if options["deactivate"]:
            with transaction.atomic():
                updated = TelegramIdentity.objects.filter(telegram_user_id=telegram_id).update(active=False)
                if not updated:
                    raise CommandError(f"Telegram id {telegram_id} is not linked")
                action_record(
                    channel=Channel.SYSTEM,
                    actor="manage.py telegram_link",
                    action="identity_deactivate",
                    allowed=True,
                    telegram_user_id=telegram_id,
                )
            self.stdout.write(f"Telegram id {telegram_id}: deactivated")
            return
        username = options["user"]
        if not username:
            raise CommandError("--user USERNAME is required to link (or --deactivate)")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        with transaction.atomic():
            identity, created = TelegramIdentity.objects.update_or_create(
                telegram_user_id=telegram_id,
                defaults={"user": user, "active": True, **({"label": label} if label else {})},
            )
            action_record(
                channel=Channel.SYSTEM,
                actor="manage.py telegram_link",
                action="identity_link",
                allowed=True,
                telegram_user_id=telegram_id,
                detail={"user": user.get_username(), "created": created},
            )
        verb = "linked" if created else "re-linked"
        self.stdout.write(f"Telegram id {telegram_id} {verb} to {user.get_username()} ({identity.label or 'no label'})")
