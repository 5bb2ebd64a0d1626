"""Distribution in the admin: the tiers (delays, channels, webhooks), and the posts with the operator's controls:
retract, correct, re-send a failed post.  Each control has its own permission, calls the same service as the API and
Telegram would, and is audited.  Tables grow with every trade: no full counts, raw ids for foreign keys."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from apps.distribution import services
from apps.distribution.models import DistributionLog, DistributionPost, DistributionTier, PostKind
from apps.ops.admin_controls import control_action_run
from apps.ops.controls import control_allowed
from apps.ops.services import audit_record

AMENDABLE = (PostKind.ENTRY, PostKind.EXIT, PostKind.STOP, PostKind.SUMMARY, PostKind.REPORT, PostKind.EXPLANATION)


class DistributionTierForm(forms.ModelForm):
    """The webhook URL is a secret: never shown back; left blank it keeps the stored one."""

    webhook_url = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Discord webhook URL. Leave blank to keep the current one; empty everywhere = the local sink.",
    )
    clear_webhook = forms.BooleanField(required=False, help_text="Remove the webhook (posts go to the local sink).")

    class Meta:
        model = DistributionTier
        fields = ("name", "delay_seconds", "channel", "enabled", "position", "webhook_url")

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data.get("webhook_url", "").strip()
        if url and not url.startswith(("https://", "http://")):
            raise forms.ValidationError("a webhook URL starts with https://")
        return url

    def save(self, commit: bool = True) -> DistributionTier:
        tier = super().save(commit=False)
        if self.cleaned_data.get("clear_webhook"):
            tier.webhook_url = ""
        elif not self.cleaned_data.get("webhook_url") and self.instance.pk:
            tier.webhook_url = DistributionTier.objects.get(pk=self.instance.pk).webhook_url
        if commit:
            tier.save()
        return tier


@admin.register(DistributionTier)
class DistributionTierAdmin(admin.ModelAdmin):
    form = DistributionTierForm
    list_display = ("name", "delay_seconds", "channel", "enabled", "webhook", "position", "updated_at")
    list_editable = ("enabled",)
    ordering = ("position", "delay_seconds")

    @admin.display(description="webhook")
    def webhook(self, obj: DistributionTier) -> str:
        return "configured" if obj.webhook_url else "local sink"

    def save_model(self, request: HttpRequest, obj: DistributionTier, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user.get_username(),
            action="distribution.tier_change" if change else "distribution.tier_add",
            target=f"tier:{obj.name}",
            detail={
                "delay_seconds": obj.delay_seconds,
                "channel": obj.channel,
                "enabled": obj.enabled,
                "webhook": "configured" if obj.webhook_url else "local sink",
                "changed": sorted(form.changed_data),
            },
        )

    def delete_model(self, request: HttpRequest, obj: DistributionTier) -> None:
        audit_record(actor=request.user.get_username(), action="distribution.tier_delete", target=f"tier:{obj.name}")
        super().delete_model(request, obj)


class AmendForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), max_length=3000)


def _targets(queryset: QuerySet[DistributionPost]) -> list[tuple[str, str]]:
    return sorted({(p.kind, p.ref) for p in queryset if p.kind in AMENDABLE and p.amends_id is None})


def _amend_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DistributionPost], *, retract: bool
) -> HttpResponse | None:
    targets = _targets(queryset)
    name = "retract_posts" if retract else "correct_posts"
    if not targets:
        modeladmin.message_user(request, "nothing to amend: select original posts", messages.ERROR)
        return None
    form = AmendForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        actor = request.user.get_username()
        for kind, ref in targets:
            try:
                if retract:
                    posts = services.post_retract(kind=kind, ref=ref, reason=form.cleaned_data["text"], actor=actor)
                else:
                    posts = services.post_correct(kind=kind, ref=ref, text=form.cleaned_data["text"], actor=actor)
            except (services.PostNotFound, ValueError) as error:
                modeladmin.message_user(request, f"{kind} {ref}: {error}", messages.ERROR)
                continue
            tiers = ", ".join(p.tier for p in posts) or "no tier had received it"
            verb = "retracted" if retract else "corrected"
            modeladmin.message_user(request, f"{kind} {ref} {verb}; notice sent to: {tiers}", messages.WARNING)
        return None
    title = "Retract posts" if retract else "Correct posts"
    explanation = (
        "Every tier that received the post gets a retraction now; tiers still waiting never get the post."
        if retract
        else "Every tier that received the post gets this correction now; tiers still waiting get the corrected post."
    )
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": title,
        "explanation": explanation,
        "targets": targets,
        "queryset": queryset,
        "action_name": name,
        "form": form,
    }
    return TemplateResponse(request, "admin/distribution/distributionpost/amend.html", context)


@admin.action(description="Retract the selected posts (every tier that got them is told)", permissions=["retract"])
def retract_posts(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DistributionPost]
) -> HttpResponse | None:
    return _amend_action(modeladmin, request, queryset, retract=True)


@admin.action(description="Correct the selected posts (every tier that got them is told)", permissions=["retract"])
def correct_posts(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DistributionPost]
) -> HttpResponse | None:
    return _amend_action(modeladmin, request, queryset, retract=False)


@admin.action(description="Re-send the selected failed posts", permissions=["resend"])
def resend_posts(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[DistributionPost]) -> None:
    # The post_resend control (one run and one audit entry per post), like the dashboard and the API.
    failed = queryset.filter(status=DistributionPost.Status.FAILED).values_list("pk", flat=True)
    count = control_action_run(modeladmin, request, "post_resend", ({"post_id": pk} for pk in failed))
    modeladmin.message_user(request, f"{count} failed post(s) scheduled again", messages.SUCCESS)


class DistributionLogInline(admin.TabularInline):
    model = DistributionLog
    extra = 0
    can_delete = False
    fields = ("at", "outcome", "status_code", "sink", "response_excerpt")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: DistributionPost | None = None) -> bool:
        return False


@admin.register(DistributionPost)
class DistributionPostAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "ref", "tier", "status", "sink", "due_at", "sent_at", "lateness_ms", "late")
    list_filter = ("status", "tier", "kind", "sink", "late")
    search_fields = ("ref", "message_id")
    date_hierarchy = "due_at"
    ordering = ("-due_at",)
    show_full_result_count = False
    list_per_page = 100
    raw_id_fields = ("amends",)
    readonly_fields = [f.name for f in DistributionPost._meta.fields]
    inlines = [DistributionLogInline]
    actions = [retract_posts, correct_posts, resend_posts]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DistributionPost | None = None) -> bool:
        return False  # the record of what subscribers received is never deleted by hand

    def has_retract_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("distribution.retract_distributionpost")

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return control_allowed("post_resend", user=request.user)


@admin.register(DistributionLog)
class DistributionLogAdmin(admin.ModelAdmin):
    list_display = ("id", "at", "channel", "tier", "ref", "outcome", "status_code", "sink")
    list_filter = ("channel", "outcome", "tier", "sink")
    search_fields = ("ref",)
    raw_id_fields = ("post",)
    ordering = ("-at",)
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = ("post", "channel", "ref", "tier", "sink", "outcome", "status_code", "response_excerpt", "at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DistributionLog | None = None) -> bool:
        return False
