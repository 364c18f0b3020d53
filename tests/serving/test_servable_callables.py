"""Session callables are shared between requests whose run timeouts differ by
a little, and a run never gets more time than its request allows."""

from hypothesis import given
from hypothesis import strategies as st

from rnnserve.serving.servable import _timeout_key


@given(st.integers(min_value=1, max_value=10**9))
def test_timeout_is_rounded_down_by_at_most_ten_percent(timeout_ms):
    key = _timeout_key(timeout_ms)
    assert 0.9 * timeout_ms <= key <= timeout_ms


def test_no_timeout_stays_none_and_nearby_deadlines_share_a_key():
    assert _timeout_key(0) == 0
    assert len({_timeout_key(29_000 + elapsed) for elapsed in range(0, 999)}) == 1
