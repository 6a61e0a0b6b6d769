"""silod's event stream: what happened to compute systems and processes, in order.

``EventBus.publish`` stamps an event with ``Time`` (RFC 3339, UTC) and hands it to every
subscription whose filter it passes; the last ``keep`` events stay in memory so that a
subscriber can ask for what happened since a moment (``Since``, seconds since the epoch) and
then follow on without a gap or a duplicate. Events are not persisted: a restarted silod
starts a fresh history (reconcile publishes what it finds).

A :class:`Subscription` is an iterator that blocks for the next matching event; ``close()``
(from any thread) ends it, and so does ``EventBus.close()``. A subscriber that falls more than
``keep`` events behind misses the oldest ones rather than holding memory for them.

Imports only the standard library.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

EVENT_TYPES = frozenset((
    "SystemCreated", "SystemStarted", "SystemPaused", "SystemResumed", "SystemExited",
    "SystemDeleted", "ProcessCreated", "ProcessExited", "OutOfMemory",
))


def rfc3339(t: float) -> str:
    """``t`` (seconds since the epoch) as RFC 3339 UTC with microseconds."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventBus:
    def __init__(self, keep: int = 1000) -> None:
        self._cond = threading.Condition()
        # (sequence, time, event); the sequence orders events published in the same tick
        self._recent: collections.deque[tuple[int, float, dict[str, Any]]] = \
            collections.deque(maxlen=keep)
        self._seq = 0
        self._closed = False

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Stamp and deliver ``event`` (a dict with ``Type`` and ``Id``); returns it."""
        now = time.time()
        stamped = {"Time": rfc3339(now), **event}
        with self._cond:
            self._seq += 1
            self._recent.append((self._seq, now, stamped))
            self._cond.notify_all()
        return stamped

    def subscribe(self, since: float | None = None, types: set[str] | None = None,
                  ids: set[str] | None = None) -> Subscription:
        """Events from now on (and, with ``since``, the remembered ones after it) whose
        ``Type`` is in ``types`` and ``Id`` in ``ids`` (None: any)."""
        with self._cond:
            if since is None:
                start = self._seq
            else:
                start = next((seq - 1 for seq, t, _ in self._recent if t > since), self._seq)
            return Subscription(self, start, types, ids)

    def history(self) -> list[dict[str, Any]]:
        with self._cond:
            return [e for _, _, e in self._recent]

    def close(self) -> None:
        """End every subscription (silod is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # for Subscription
    def _next_after(self, seq: int, sub: Subscription,
                    timeout: float | None) -> tuple[int, dict[str, Any]] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if sub.closed or self._closed:
                    raise StopIteration
                for s, _, event in self._recent:
                    if s > seq:
                        seq = s
                        if sub.matches(event):
                            return s, event
                sub.position = seq
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._cond.wait(left)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Subscription(Iterator[dict[str, Any]]):
    """A filtered, blocking view of the event stream. Iterate it, or call :meth:`get` with a
    timeout to come up for air (a streaming HTTP handler checks its client that way)."""

    def __init__(self, bus: EventBus, position: int, types: set[str] | None,
                 ids: set[str] | None) -> None:
        self._bus = bus
        self.position = position
        self.types = set(types) if types else None
        self.ids = set(ids) if ids else None
        self.closed = False

    def matches(self, event: dict[str, Any]) -> bool:
        if self.types is not None and event.get("Type") not in self.types:
            return False
        return self.ids is None or event.get("Id") in self.ids

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next matching event, or None after ``timeout`` seconds without one.
        Raises StopIteration once closed."""
        found = self._bus._next_after(self.position, self, timeout)
        if found is None:
            return None
        self.position, event = found
        return event

    def __next__(self) -> dict[str, Any]:
        event = self.get(None)
        assert event is not None
        return event

    def close(self) -> None:
        self.closed = True
        self._bus._wake()
