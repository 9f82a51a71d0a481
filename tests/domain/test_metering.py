"""Price segments of a period (domain.metering): where a mid-period price change cuts it."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.metering import PriceChange, Segment, price_at, price_segments

SETTINGS = settings(database=None, max_examples=300)


def test_no_change_is_one_segment_at_the_current_price() -> None:
    assert price_segments(100, 200, "p_now", []) == [Segment(100, 200, "p_now")]


def test_a_change_inside_the_period_cuts_it() -> None:
    changes = [PriceChange(150, "p_old", "p_new")]
    assert price_segments(100, 200, "p_new", changes) == [
        Segment(100, 150, "p_old"),
        Segment(150, 200, "p_new"),
    ]


def test_changes_outside_the_period_only_pick_its_price() -> None:
    before = [PriceChange(50, "p_a", "p_b")]
    after = [PriceChange(200, "p_a", "p_b")]  # at the end: the next period's
    assert price_segments(100, 200, "p_b", before) == [Segment(100, 200, "p_b")]
    assert price_segments(100, 200, "p_b", after) == [Segment(100, 200, "p_a")]
    at_start = [PriceChange(100, "p_a", "p_b")]
    assert price_segments(100, 200, "p_b", at_start) == [Segment(100, 200, "p_b")]


def test_same_second_changes_take_the_last_and_a_round_trip_merges() -> None:
    same_second = [PriceChange(150, "p_a", "p_b"), PriceChange(150, "p_b", "p_c")]
    assert price_segments(100, 200, "p_c", same_second) == [
        Segment(100, 150, "p_a"),
        Segment(150, 200, "p_c"),
    ]
    round_trip = [PriceChange(150, "p_a", "p_b"), PriceChange(150, "p_b", "p_a")]
    assert price_segments(100, 200, "p_a", round_trip) == [Segment(100, 200, "p_a")]


@st.composite
def histories(draw: st.DrawFn) -> list[PriceChange]:
    times = sorted(draw(st.lists(st.integers(0, 1000), max_size=8)))
    prices = draw(
        st.lists(
            st.sampled_from(["p_a", "p_b", "p_c"]), min_size=len(times) + 1, max_size=len(times) + 1
        )
    )
    return [PriceChange(t, prices[i], prices[i + 1]) for i, t in enumerate(times)]


@SETTINGS
@given(histories(), st.integers(0, 1000), st.integers(1, 500))
def test_segments_tile_the_period_at_the_price_in_effect(
    changes: list[PriceChange], start: int, length: int
) -> None:
    end = start + length
    current = changes[-1].new_price_id if changes else "p_a"
    segments = price_segments(start, end, current, changes)
    assert segments[0].start == start and segments[-1].end == end
    for left, right in pairwise(segments):
        assert left.end == right.start and left.price_id != right.price_id
    for ts in range(start, end, max(1, length // 17)):
        [holding] = [s for s in segments if s.start <= ts < s.end]
        assert holding.price_id == price_at(ts, current, changes)
