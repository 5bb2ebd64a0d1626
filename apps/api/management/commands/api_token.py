"""``manage.py api_token --user NAME``: give an operator a new API token and print it (stdout, nothing else).

Each run rotates: the user's previous token stops working at once, so a leaked token is revoked by running the command
again.  ``--revoke`` deletes the token without issuing a new one.  The token carries the user's own permissions and
nothing more; the issue (or revocation) is an ops audit entry.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from apps.ops.services import audit_record


class Command(BaseCommand):
    help = "Create or rotate (or --revoke) the API token of an operator and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="the username the token acts as")
        parser.add_argument("--revoke", action="store_true", help="delete the token and issue none")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["user"]
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is not active: an inactive user's token would be refused anyway")
        with transaction.atomic():
            had = Token.objects.filter(user=user).delete()[0] > 0
            if options["revoke"]:
                audit_record(actor="manage.py", action="api.token.revoke", target=username, detail={"had": had})
                self.stderr.write(f"API token of {username} revoked" if had else f"{username} had no API token")
                return
            token = Token.objects.create(user=user)
            audit_record(actor="manage.py", action="api.token.issue", target=username, detail={"rotated": had})
        self.stderr.write(
            f"API token of {username} {'rotated' if had else 'created'}; send it as 'Authorization: Token <key>'"
        )
        self.stdout.write(token.key)
