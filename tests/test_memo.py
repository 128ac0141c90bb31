"""The shared least-recently-used cache (`tts.memo.LruCache`)."""

from __future__ import annotations

import pytest

from tts.memo import LruCache


def test_keeps_the_most_recent_entries_and_makes_each_missing_value_once():
    cache = LruCache(2)
    made = []

    def make(key):
        return lambda: made.append(key) or key * 10

    assert cache.get_or_make(1, make(1)) == 10 and cache.get_or_make(2, make(2)) == 20
    assert cache.get_or_make(1, make(1)) == 10 and made == [1, 2]  # a hit makes nothing
    cache.put(3, 30)  # 2 is now the oldest: dropped
    assert len(cache) == 2 and cache.get(2) is None and cache.get(1) == 10 and cache.get(3) == 30
    assert cache.get_or_make(2, make(2)) == 20 and made == [1, 2, 2] and cache.get(1, "gone") == "gone"
    with pytest.raises(ValueError):
        LruCache(0)
