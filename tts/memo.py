"""A small thread-safe least-recently-used cache: the one home of the per-voice caches (voice prompts, tone
colors, the refiner's prompt state).

    cache = LruCache(16)
    value = cache.get_or_make(key, lambda: expensive(key))

`make` runs outside the lock, so one slow computation never holds up other keys; two threads missing the same key
at once both compute it and the later one is kept (the values are equal).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

__all__ = ["LruCache"]


class LruCache:
    """At most `size` entries; a hit makes its entry the most recent, an insert beyond `size` drops the oldest."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of `key` (now the most recent), else `default`."""
        with self._lock:
            if key not in self._entries:
                return default
            self._entries.move_to_end(key)
            return self._entries[key]

    def put(self, key: Hashable, value: Any) -> None:
        """Store `value` for `key` as the most recent, dropping the oldest entries beyond `size`."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value of `key`, made by `make()` and stored when missing."""
        missing = object()
        value = self.get(key, missing)
        if value is missing:
            value = make()
            self.put(key, value)
        return value
