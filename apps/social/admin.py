"""The social queue in the admin: a lean, read-only list (content changes only through approvals), and one action
to put failed posts back in the queue, behind its own permission and audited."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.social import services
from apps.social.models import SocialPost


@admin.action(description="Re-queue the selected failed posts", permissions=["requeue"])
def requeue_failed(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[SocialPost]) -> None:
    ids = list(queryset.filter(status=SocialPost.Status.FAILED).values_list("pk", flat=True))
    requeued = services.posts_requeue_failed(post_ids=ids, actor=f"admin:{request.user.get_username()}")
    skipped = queryset.count() - len(requeued)
    if requeued:
        modeladmin.message_user(request, f"re-queued {len(requeued)} post(s)", messages.SUCCESS)
    if skipped:
        modeladmin.message_user(
            request,
            f"{skipped} post(s) left alone: only failed posts whose approval is approved can be re-queued",
            messages.WARNING,
        )


@admin.register(SocialPost)
class SocialPostAdmin(admin.ModelAdmin):
    list_display = ("id", "platform", "source_ref", "status", "sink", "created_at", "published_at", "attempts")
    list_filter = ("status", "platform", "source", "sink")
    search_fields = ("source_ref", "external_id")
    ordering = ("-created_at",)
    show_full_result_count = False
    list_per_page = 100
    raw_id_fields = ("approval",)
    actions = [requeue_failed]
    readonly_fields = [f.name for f in SocialPost._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SocialPost | None = None) -> bool:
        return False  # the text is decided in the approval, never edited here

    def has_delete_permission(self, request: HttpRequest, obj: SocialPost | None = None) -> bool:
        return False

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.REQUEUE_PERMISSION)
