"""Admin lists that stay fast on tables growing by millions of rows a day (the tick tables: ``uw_*``, ``ib_quotes``,
``analytics_snapshots``).

Django's change list costs three things on such a table: ``COUNT(*)`` of the whole filtered table on every page (for
the paginator), a second full count unless ``show_full_result_count = False``, and every column of every row on the
page, raw payloads included.  ``LeanListAdmin`` bounds the first (the paginator counts at most ``COUNT_CAP`` rows,
through a ``LIMIT`` subquery: past that the list says "10001" and pages on), switches off the second, and leaves
``list_defer`` columns out of the list's SELECT (the detail page still shows them).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

# How many rows a list counts at most: enough pages to browse, never a scan of the table.
COUNT_CAP = 10_000


class BoundedCountPaginator(Paginator):
    """A paginator whose count stops at ``COUNT_CAP + 1`` rows (``SELECT COUNT(*) FROM (... LIMIT n)``)."""

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet):
            return object_list[: COUNT_CAP + 1].count()
        return len(object_list)


class LeanChangeList(ChangeList):
    """The change list of a ``LeanListAdmin``: the model admin's ``list_defer`` columns are not selected."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        defer = getattr(self.model_admin, "list_defer", ())
        return queryset.defer(*defer) if defer else queryset


class LeanListAdmin(admin.ModelAdmin):
    """A model admin for a tick table: bounded count, no full count, payload columns (``list_defer``) not loaded by
    the list.  Keep ``list_display`` to plain columns (no foreign keys or methods that query per row) and
    ``list_filter`` to fields with choices (a filter on a free-text column runs ``SELECT DISTINCT`` over the table)."""

    list_defer: tuple[str, ...] = ()
    show_full_result_count = False
    paginator = BoundedCountPaginator

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList
