"""Complete check results by (tenant, content hash, checks run), least recently used first out."""

from __future__ import annotations

from collections import OrderedDict

from consumer.policy.decision import CheckResults

__all__ = ["ResultCache"]


class ResultCache:
    """LRU of complete check results by (tenant, content hash, checks run): re-uploads skip the providers."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.enabled = size > 0
        self._items: OrderedDict[tuple[str, str, str], CheckResults] = OrderedDict()

    def get(self, key: tuple[str, str, str] | None) -> CheckResults | None:
        if key is None or key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: tuple[str, str, str] | None, results: CheckResults | None) -> None:
        if key is None or self._size == 0 or results is None:
            return
        self._items[key] = results
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)
