"""Drift detection for the Unusual Whales feed: which fields a socket channel or REST endpoint sends, and when that
changes (docs/ingestion_drift.md).

Each *stream* (``ws:<channel family>``, ``rest:<endpoint>``) has a fingerprint (``FieldFingerprint``): every field
seen with its JSON types, and the fields present in every baseline payload (``required``).  The first
``BASELINE_PAYLOADS`` payloads of a stream (or the whole first call, when it brings more) teach the fingerprint
silently; afterwards a never-seen field, a missing required field or a field with a new non-null type is a
``DriftEvent``.  Drift never rejects a frame: the caller archives the payload raw whatever ``observe`` finds.

``observe`` runs on the ingestion hot path (up to 20,000 frames/s), so it works on a per-process cache:

- the key tuple of a payload (``tuple(payload)``, arrival order) maps to what its *shape* means (nothing, or the
  open new/missing-field events it shows); a known shape costs a tuple, a dict look-up and a test;
- value types are checked on every payload whose shape is new to the cache, plus one payload in ``SAMPLE_EVERY`` per
  stream, so a re-typed field is detected within about ``SAMPLE_EVERY`` payloads of it starting (and a field re-typed
  in fewer payloads than that may go unseen: the price of a check that costs ~1 µs instead of ~10);
- the database is read when a stream is first seen and then at most every ``REFRESH_SECONDS`` (so the processes of
  a deployment converge), and written only when something changed: a new event or type at once, the occurrence
  counts of events already open and ``payloads_seen`` coalesced into one write per stream per refresh.

State changes that depend on a write (a field added to the fingerprint, an event now open) reach the cache only when
the caller's transaction commits, so a rolled-back batch is examined again on its retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import redis
from django.db import IntegrityError, transaction
from django.db.models import Count, F

from apps.core import clock
from apps.core.store import HashMapping, get_redis
from apps.ingestion.models import DriftEvent, FieldFingerprint
from apps.ops import metrics
from apps.ops.services import audit_record

logger = logging.getLogger(__name__)

BASELINE_PAYLOADS = 200  # payloads a stream's fingerprint learns from before anything counts as drift
SAMPLE_EVERY = 64  # one payload in this many (per stream and process) has its value types checked
REFRESH_SECONDS = 5.0  # the longest a process works from its cached fingerprint before re-reading the database
KEY_CACHE_LIMIT = 4096  # distinct key tuples remembered per stream; a feed that exceeds it starts the cache afresh
OPEN_KEY = "uw:drift:open"  # Redis hash: "total" and "<stream>|<kind>" -> unacknowledged events
OPEN_TOTAL = "total"

NEW_FIELD = DriftEvent.Kind.NEW_FIELD.value
MISSING_FIELD = DriftEvent.Kind.MISSING_FIELD.value
RETYPED_FIELD = DriftEvent.Kind.RETYPED_FIELD.value
EventKey = tuple[str, str, str]  # (kind, field, observed): the event's identity within its stream

_JSON_TYPES: dict[type, str] = {
    str: "string",
    int: "number",  # money comes as strings or numbers, ints or floats: all numbers are one type
    float: "number",
    Decimal: "number",
    bool: "boolean",
    type(None): "null",
    list: "array",
    tuple: "array",
    dict: "object",
}


def json_type(value: Any) -> str:
    """The JSON type of a decoded value: ``string``, ``number``, ``boolean``, ``null``, ``array`` or ``object``."""
    name = _JSON_TYPES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def stream_for_channel(channel_name: str) -> str:
    """The drift stream of a socket channel: its family (``option_trades:SPY`` -> ``ws:option_trades``)."""
    return f"ws:{channel_name.partition(':')[0]}"


def stream_for_endpoint(endpoint: str) -> str:
    """The drift stream of a REST endpoint (``flow_alerts`` -> ``rest:flow_alerts``)."""
    return f"rest:{endpoint}"


@dataclass
class _Finding:
    """Drift seen for the first time by this call: what the event row is created with."""

    expected: str
    sample: Mapping[str, Any]


@dataclass
class _Stream:
    """One stream's fingerprint as this process knows it, and the caches built on it."""

    name: str
    fields: dict[str, frozenset[str]]
    required: frozenset[str]
    payloads_seen: int
    open_events: set[EventKey]  # unacknowledged events of the stream
    open_new: dict[str, EventKey]  # field -> its open new_field event (payloads carrying it are counted)
    open_retyped: dict[tuple[str, str], EventKey]  # (field, type) -> its open retyped_field event
    keys: dict[tuple[str, ...], tuple[EventKey, ...]] = field(default_factory=dict)  # shape -> open events shown
    counter: int = 0  # payloads observed since the load: drives the 1-in-SAMPLE_EVERY type check
    unsaved_seen: int = 0  # payloads observed since payloads_seen was last written
    pending: dict[EventKey, int] = field(default_factory=dict)  # occurrences of open events not yet written
    loaded_at: float = 0.0

    @property
    def learning(self) -> bool:
        return self.payloads_seen < BASELINE_PAYLOADS

    def same_fingerprint(self, other: _Stream) -> bool:
        return (self.fields, self.required, self.open_events) == (other.fields, other.required, other.open_events)


# One cache per thread, like one per process: threads (a threaded worker pool, the tests' racing writers) converge
# through the database as processes do.  A process-wide lock held across the database writes below would deadlock
# against the row locks another thread's transaction holds.
_local = threading.local()


def _cache() -> dict[str, _Stream]:
    streams: dict[str, _Stream] | None = getattr(_local, "streams", None)
    if streams is None:
        streams = _local.streams = {}
    return streams


def reset_cache() -> None:
    """Forget every cached fingerprint without writing anything (a fresh process; tests simulating one)."""
    _cache().clear()


# --- reads -------------------------------------------------------------------------------------------------------


def _load(stream: str) -> _Stream:
    row = FieldFingerprint.objects.filter(stream=stream).values_list("fields", "required", "payloads_seen").first()
    fields_json, required_json, seen = row if row is not None else ({}, [], 0)
    state = _Stream(
        name=stream,
        fields={name: frozenset(types) for name, types in fields_json.items()},
        required=frozenset(required_json),
        payloads_seen=seen,
        open_events=set(),
        open_new={},
        open_retyped={},
        loaded_at=time.monotonic(),
    )
    for kind, name, observed in DriftEvent.objects.filter(stream=stream, acknowledged_at__isnull=True).values_list(
        "kind", "field", "observed"
    ):
        _adopt_open(state, (kind, name, observed))
    return state


def _adopt_open(state: _Stream, key: EventKey) -> None:
    kind, name, observed = key
    state.open_events.add(key)
    if kind == NEW_FIELD:
        state.open_new[name] = key
    elif kind == RETYPED_FIELD:
        state.open_retyped[(name, observed)] = key


def _state(stream: str) -> _Stream:
    """The cached stream, re-read from the database when ``REFRESH_SECONDS`` have passed (pending counts flushed)."""
    state = _cache().get(stream)
    if state is not None and time.monotonic() - state.loaded_at < REFRESH_SECONDS:
        return state
    if state is not None:
        _flush_stream(state)
    fresh = _load(stream)
    if state is not None and state.same_fingerprint(fresh):
        state.payloads_seen = fresh.payloads_seen
        state.loaded_at = fresh.loaded_at
        return state
    _cache()[stream] = fresh
    return fresh


# --- writes ------------------------------------------------------------------------------------------------------


def _save_fingerprint(
    stream: str, *, fields: Mapping[str, Iterable[str]], required: frozenset[str], seen: int
) -> FieldFingerprint:
    """Merge what this process learned into the stored fingerprint: types are united, ``required`` intersected (a
    field optional anywhere is optional), ``payloads_seen`` added to.  Row-locked, so concurrent workers merge."""
    now = clock.now()
    with transaction.atomic():
        row = FieldFingerprint.objects.select_for_update().filter(stream=stream).first()
        if row is None:
            try:
                with transaction.atomic():
                    return FieldFingerprint.objects.create(
                        stream=stream,
                        fields={name: sorted(types) for name, types in fields.items()},
                        required=sorted(required),
                        payloads_seen=seen,
                        first_seen=now,
                        updated_at=now,
                    )
            except IntegrityError:  # another worker created it since the look-up
                row = FieldFingerprint.objects.select_for_update().get(stream=stream)
        merged = {name: set(types) for name, types in row.fields.items()}
        for name, types in fields.items():
            merged.setdefault(name, set()).update(types)
        row.fields = {name: sorted(types) for name, types in merged.items()}
        row.required = sorted(set(row.required) & required) if row.payloads_seen else sorted(required)
        row.payloads_seen += seen
        row.updated_at = now
        row.save(update_fields=["fields", "required", "payloads_seen", "updated_at"])
        return row


def _storable(value: Any) -> Any:
    """``value`` as PostgreSQL can store it in JSON: NUL characters replaced, anything not JSON as its string."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {_storable(str(key)): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _storable(str(value))


def _count_occurrences(stream: str, counts: Mapping[EventKey, int]) -> None:
    now = clock.now()
    for (kind, name, observed), count in counts.items():
        DriftEvent.objects.filter(stream=stream, kind=kind, field=name, observed=observed).update(
            occurrences=F("occurrences") + count, last_seen=now
        )


def _flush_stream(state: _Stream) -> None:
    if state.pending:
        _count_occurrences(state.name, state.pending)
        state.pending = {}
    if state.unsaved_seen:
        FieldFingerprint.objects.filter(stream=state.name).update(payloads_seen=F("payloads_seen") + state.unsaved_seen)
        state.unsaved_seen = 0


def flush() -> None:
    """Write the occurrence counts and ``payloads_seen`` this process holds back (at most ``REFRESH_SECONDS`` of
    them); for a listener shutting down, and tests."""
    for state in _cache().values():
        _flush_stream(state)


def _record(stream: str, findings: Mapping[EventKey, _Finding], counts: Mapping[EventKey, int]) -> list[DriftEvent]:
    """Create the events first seen in this batch (one upsert each); a row another worker created meanwhile gets the
    counts instead.  Returns the rows created."""
    now = clock.now()
    created: list[DriftEvent] = []
    for key, finding in findings.items():
        kind, name, observed = key
        count = counts.get(key, 1)
        try:
            with transaction.atomic():
                created.append(
                    DriftEvent.objects.create(
                        stream=stream,
                        kind=kind,
                        field=_storable(name)[:200],
                        expected=finding.expected[:100],
                        observed=observed[:100],
                        sample=_storable(finding.sample),
                        occurrences=count,
                        first_seen=now,
                        last_seen=now,
                    )
                )
        except IntegrityError:
            _count_occurrences(stream, {key: count})
    return created


def _publish_open_counts() -> None:
    """Mirror the unacknowledged events into ``uw:drift:open`` (recomputed from the table, so it cannot wander)."""
    summary = drift_summary()
    mapping: dict[str, str] = {OPEN_TOTAL: str(summary["open"])}
    for stream, kinds in summary["streams"].items():
        for kind, count in kinds.items():
            mapping[f"{stream}|{kind}"] = str(count)
    try:
        pipe = get_redis().pipeline(transaction=True)
        pipe.delete(OPEN_KEY)
        pipe.hset(OPEN_KEY, mapping=cast(HashMapping, mapping))
        pipe.execute()
    except redis.RedisError as exc:
        # The table is the truth (drift_summary); the key is redone at the next drift change or acknowledgement.
        logger.warning("could not publish %s: %s", OPEN_KEY, exc)


# --- observe -----------------------------------------------------------------------------------------------------


def _learn(state: _Stream, payloads: Sequence[Mapping[str, Any]]) -> None:
    fields: dict[str, set[str]] = {name: set(types) for name, types in state.fields.items()}
    required: set[str] | None = set(state.required) if state.payloads_seen else None
    for payload in payloads:
        if not isinstance(payload, Mapping):
            continue
        if required is None:
            required = set(payload)
        else:
            required.intersection_update(payload)
        for name, value in payload.items():
            if "\x00" not in name:  # PostgreSQL cannot store the name; ingestion quarantines such frames
                fields.setdefault(name, set()).add(json_type(value))
    row = _save_fingerprint(state.name, fields=fields, required=frozenset(required or ()), seen=len(payloads))
    # Learning creates no event, so nothing waits for a commit: a rollback at worst relearns a few payloads.
    state.fields = {name: frozenset(types) for name, types in row.fields.items()}
    state.required = frozenset(row.required)
    state.payloads_seen = row.payloads_seen
    state.keys.clear()


@dataclass
class _Batch:
    """What one call found, before it is written and (after commit) adopted by the cache."""

    state: _Stream
    findings: dict[EventKey, _Finding] = field(default_factory=dict)
    counts: dict[EventKey, int] = field(default_factory=dict)
    new_types: dict[str, set[str]] = field(default_factory=dict)  # field -> types to add to the fingerprint
    new_fields: dict[str, EventKey] = field(default_factory=dict)  # field first seen in this call -> its event

    def classify(self, shape: tuple[str, ...], payload: Mapping[str, Any]) -> tuple[EventKey, ...]:
        """The new/missing-field events a payload of this shape shows (open ones included, to count them)."""
        state = self.state
        known = state.fields
        tags: list[EventKey] = []
        for name in shape:
            if "\x00" in name:
                continue
            if name in known:
                if state.open_new and name in state.open_new:
                    tags.append(state.open_new[name])
                continue
            observed = json_type(payload[name])
            key = self.new_fields.get(name)
            if key is None:
                key = self.new_fields[name] = (NEW_FIELD, name, observed)
                if key not in state.open_events:
                    self.findings[key] = _Finding(expected="absent", sample=payload)
            self.new_types.setdefault(name, set()).add(observed)
            tags.append(key)
        for name in state.required.difference(shape):
            key = (MISSING_FIELD, name, "absent")
            if key not in state.open_events and key not in self.findings:
                self.findings[key] = _Finding(expected="present", sample=payload)
            tags.append(key)
        return tuple(tags)

    def check_types(self, payload: Mapping[str, Any]) -> None:
        if not isinstance(payload, Mapping):
            return
        state = self.state
        for name, value in payload.items():
            known = state.fields.get(name)
            if known is None:  # a new field: classify reported it
                continue
            observed = _JSON_TYPES.get(type(value)) or json_type(value)
            if observed in known:
                if state.open_retyped and (name, observed) in state.open_retyped:
                    key = state.open_retyped[(name, observed)]
                    self.counts[key] = self.counts.get(key, 0) + 1
                continue
            self.new_types.setdefault(name, set()).add(observed)
            if observed == "null" or known <= {"null"}:
                continue  # null <-> a type is an optional value, not drift: learned silently
            key = (RETYPED_FIELD, name, observed)
            self.counts[key] = self.counts.get(key, 0) + 1
            if key not in state.open_events and key not in self.findings:
                expected = ",".join(sorted(known - {"null"}))
                self.findings[key] = _Finding(expected=expected, sample=payload)


def observe(stream: str, payloads: Sequence[Mapping[str, Any]]) -> list[DriftEvent]:
    """Compare each payload's fields and JSON types with the stream's fingerprint; record drift; return new events.

    Guarantees: never raises for what a payload contains and never rejects one; each drift (stream, kind, field,
    observed type) is one row, created and logged once across calls and processes, its ``occurrences`` counting the
    payloads that show it while it is unacknowledged (re-types on the checked sample).  Runs in the caller's
    transaction; the cache adopts what it wrote only once that commits.
    """
    if not payloads:
        return []
    state = _state(stream)
    if state.learning:
        _learn(state, payloads)
        return []
    return _detect(state, payloads)


def _detect(state: _Stream, payloads: Sequence[Mapping[str, Any]]) -> list[DriftEvent]:
    batch = _Batch(state)
    keys = state.keys
    counts = batch.counts
    unseen: dict[tuple[str, ...], tuple[EventKey, ...]] = {}
    for payload in payloads:  # the hot loop: one tuple and one look-up per payload with a known shape
        try:
            shape = tuple(payload)
            tags = keys.get(shape)
        except TypeError:  # not an object (its items unhashable): nothing to fingerprint
            continue
        if tags is None:
            tags = unseen.get(shape)
            if tags is None:
                if not isinstance(payload, Mapping):
                    continue
                tags = unseen[shape] = batch.classify(shape, payload)
                batch.check_types(payload)
        if tags:
            for key in tags:
                counts[key] = counts.get(key, 0) + 1
    for payload in payloads[(-state.counter) % SAMPLE_EVERY :: SAMPLE_EVERY]:
        batch.check_types(payload)
    state.counter += len(payloads)
    state.unsaved_seen += len(payloads)

    if not batch.findings and not batch.new_types:
        # Nothing new: the shapes only show events already open; counts wait for the next refresh.
        for key, count in counts.items():
            state.pending[key] = state.pending.get(key, 0) + count
        _remember(state, unseen)
        return []

    if batch.new_types:
        _save_fingerprint(state.name, fields=batch.new_types, required=state.required, seen=0)
    created = _record(state.name, batch.findings, counts)
    _count_occurrences(state.name, {key: n for key, n in counts.items() if key not in batch.findings})

    def adopt() -> None:
        if _cache().get(state.name) is not state:
            return  # reloaded meanwhile: the database already has all of it
        for name, types in batch.new_types.items():
            state.fields[name] = state.fields.get(name, frozenset()) | types
        for key in batch.findings:
            _adopt_open(state, key)
        _remember(state, unseen)
        for event in created:
            metrics.drift_event(stream=event.stream, kind=event.kind)
            logger.warning(
                "UW drift on %s: %s %s (expected %s, observed %s)",
                event.stream,
                event.kind,
                event.field,
                event.expected,
                event.observed,
                extra={"stream": event.stream, "drift_kind": event.kind, "field": event.field},
            )
        if created:
            _publish_open_counts()

    transaction.on_commit(adopt, robust=True)
    return created


def _remember(state: _Stream, shapes: Mapping[tuple[str, ...], tuple[EventKey, ...]]) -> None:
    if not shapes:
        return
    if len(state.keys) + len(shapes) > KEY_CACHE_LIMIT:
        state.keys.clear()
    state.keys.update(shapes)


# --- operator reads and actions ----------------------------------------------------------------------------------


def open_drift_events(limit: int = 50) -> list[DriftEvent]:
    """Unacknowledged drift events, the most recently seen first."""
    return list(DriftEvent.objects.filter(acknowledged_at__isnull=True).order_by("-last_seen", "-id")[:limit])


def drift_summary() -> dict[str, Any]:
    """Unacknowledged events: ``{"open": total, "streams": {stream: {kind: count}}}``."""
    streams: dict[str, dict[str, int]] = {}
    total = 0
    rows = (
        DriftEvent.objects.filter(acknowledged_at__isnull=True)
        .values_list("stream", "kind")
        .annotate(n=Count("id"))
        .order_by("stream", "kind")
    )
    for stream, kind, count in rows:
        streams.setdefault(stream, {})[kind] = count
        total += count
    return {"open": total, "streams": streams}


def acknowledge(*, event_ids: Iterable[int], user: str) -> int:
    """Mark events as seen by ``user``; returns how many were open.  A missing field acknowledged stops being
    required (the operator accepts it as optional); a new field or type is already part of the fingerprint.  Written
    to the audit log; ``uw:drift:open`` and every process's cache follow after commit."""
    ids = sorted(set(event_ids))
    now = clock.now()
    with transaction.atomic():
        events = list(
            DriftEvent.objects.select_for_update().filter(id__in=ids, acknowledged_at__isnull=True).order_by("id")
        )
        if not events:
            return 0
        DriftEvent.objects.filter(id__in=[event.id for event in events]).update(
            acknowledged_at=now, acknowledged_by=user[:150]
        )
        optional: dict[str, set[str]] = {}
        for event in events:
            if event.kind == MISSING_FIELD:
                optional.setdefault(event.stream, set()).add(event.field)
        for stream, names in optional.items():
            row = FieldFingerprint.objects.select_for_update().filter(stream=stream).first()
            if row is not None:
                row.required = [name for name in row.required if name not in names]
                row.updated_at = now
                row.save(update_fields=["required", "updated_at"])
        streams = sorted({event.stream for event in events})
        audit_record(
            actor=user,
            action="ingestion.drift_acknowledge",
            target=", ".join(streams)[:255],
            detail={"events": [{"id": e.id, "stream": e.stream, "kind": e.kind, "field": e.field} for e in events]},
        )

        def forget() -> None:
            for stream in streams:
                state = _cache().pop(stream, None)
                if state is not None:
                    _flush_stream(state)
            _publish_open_counts()

        transaction.on_commit(forget, robust=True)
    return len(events)
