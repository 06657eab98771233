"""``consumer.checks.result_cache``: an LRU of complete check results, checked against a model."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.checks.result_cache import ResultCache
from consumer.policy.decision import CheckResults

PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None)
Key = tuple[str, str, str]


def results(tag: str) -> CheckResults:
    return CheckResults(unavailable={"visual": tag})


KEYS = st.tuples(
    st.sampled_from(["acme", "beta"]), st.sampled_from(["h1", "h2", "h3"]), st.sampled_from(["a", "a,b"])
)
OPS = st.lists(st.tuples(st.sampled_from(["get", "put"]), KEYS), max_size=40)


@PROPERTIES
@given(st.integers(0, 5), OPS)
def test_the_cache_behaves_as_a_least_recently_used_map_of_its_size(
    size: int, ops: list[tuple[str, Key]]
) -> None:
    cache = ResultCache(size)
    model: OrderedDict[Key, CheckResults] = OrderedDict()
    for i, (op, key) in enumerate(ops):
        if op == "put":
            value = results(str(i))
            cache.put(key, value)
            if size:
                model[key] = value
                model.move_to_end(key)
                while len(model) > size:
                    model.popitem(last=False)
        else:
            expected = model.get(key)
            if expected is not None:
                model.move_to_end(key)
            assert cache.get(key) is expected
    assert cache.enabled == (size > 0)
    for key in list(model):
        assert cache.get(key) is model[key]


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = ResultCache(2)
    a, b, c = ("t", "a", "p"), ("t", "b", "p"), ("t", "c", "p")
    cache.put(a, results("a"))
    cache.put(b, results("b"))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, results("c"))
    assert cache.get(b) is None
    assert cache.get(a) is not None and cache.get(c) is not None


def test_one_tenant_or_plan_never_answers_for_another() -> None:
    cache = ResultCache(10)
    cache.put(("acme", "h", "csam,visual"), results("acme"))
    assert cache.get(("beta", "h", "csam,visual")) is None
    assert cache.get(("acme", "h", "csam")) is None


def test_no_key_or_no_results_or_size_zero_stores_nothing() -> None:
    cache = ResultCache(2)
    cache.put(None, results("x"))
    cache.put(("t", "h", "p"), None)
    assert cache.get(None) is None and cache.get(("t", "h", "p")) is None
    off = ResultCache(0)
    off.put(("t", "h", "p"), results("x"))
    assert not off.enabled and off.get(("t", "h", "p")) is None
