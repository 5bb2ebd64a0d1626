"""Approvals in the admin: decide a pending request (same service and permission as Telegram), read every action,
and link Telegram user ids to people."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.approvals import services
from apps.approvals.models import ApprovalAction, ApprovalRequest, TelegramIdentity


def _decide(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ApprovalRequest], decision: str
) -> None:
    done = 0
    for approval in queryset:
        try:
            services.request_decide(
                request_id=approval.pk,
                decision=decision,
                user=request.user,
                channel=services.Channel.ADMIN,
                actor=f"admin:{request.user.get_username()}",
            )
            done += 1
        except services.ApprovalError as error:
            modeladmin.message_user(request, f"#{approval.pk}: {error}", messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{decision}d {done} request(s)", messages.SUCCESS)


@admin.action(description="Approve the selected requests (publishes them)", permissions=["decide"])
def approve(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> None:
    _decide(modeladmin, request, queryset, "approve")


@admin.action(description="Reject the selected requests", permissions=["decide"])
def reject(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> None:
    _decide(modeladmin, request, queryset, "reject")


class ApprovalActionInline(admin.TabularInline):
    model = ApprovalAction
    extra = 0
    can_delete = False
    fields = ("at", "channel", "actor", "action", "allowed", "reason")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: ApprovalRequest | None = None) -> bool:
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "subject_type", "subject_id", "title", "status", "created_at", "expires_at", "decided_by")
    list_filter = ("status", "subject_type")
    search_fields = ("title", "decided_by")
    ordering = ("-created_at",)
    show_full_result_count = False
    list_per_page = 100
    actions = [approve, reject]
    readonly_fields = [f.name for f in ApprovalRequest._meta.fields]
    inlines = [ApprovalActionInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApprovalRequest | None = None) -> bool:
        return False  # decisions go through the actions, never a raw edit

    def has_delete_permission(self, request: HttpRequest, obj: ApprovalRequest | None = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.DECIDE_PERMISSION)


@admin.register(ApprovalAction)
class ApprovalActionAdmin(admin.ModelAdmin):
    list_display = ("id", "at", "channel", "actor", "action", "allowed", "request_id")
    list_filter = ("channel", "allowed", "action")
    search_fields = ("actor", "reason")
    ordering = ("-at",)
    raw_id_fields = ("request",)
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = [f.name for f in ApprovalAction._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApprovalAction | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApprovalAction | None = None) -> bool:
        return False


@admin.register(TelegramIdentity)
class TelegramIdentityAdmin(admin.ModelAdmin):
    list_display = ("telegram_user_id", "user", "label", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("telegram_user_id", "label", "user__username")
    raw_id_fields = ("user",)
