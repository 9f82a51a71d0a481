"""The Kafka usage message, version 2 (``domain.wire``), and the checks the aggregator runs
on it (``domain.fold.ops_of``, ``aggregator.batch.decode_requests``).

The message is the contract between the ingest and the aggregator: what the ingest encodes
must decode to the same requests, the header's ops must be exactly the collapsed records
(the aggregator folds only those), and anything else in the ops must be rejected per
request rather than folded or crashing the batch. The reference for "same usage" is
``fold_map``, the usage map built record by record.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.batch import Request, decode_requests
from domain.fold import InvalidRecords, Op, collapse, collapse_valid, fold_map, ops_of
from domain.wire import (
    UsageMessage,
    decode_head,
    decode_usage,
    encode_entries,
    encode_usage,
    records_of,
    usage_entry,
)

START, END = 1_000, 2_000

Record = tuple[int, int, bool]

timestamps = st.integers(START, START + 8)  # few distinct timestamps: many collisions
quantities = st.one_of(st.integers(0, 100), st.integers(0, 2**53))
record = st.tuples(timestamps, quantities, st.booleans())
records = st.lists(record, min_size=1, max_size=40)
names = st.text(max_size=12)  # any text, "\n" and quotes included: orjson must escape them

messages = st.builds(
    UsageMessage,
    id=names,
    account_id=names,
    livemode=st.booleans(),
    item_pk=st.integers(1, 2**40),
    period_start=st.just(START),
    period_end=st.just(END),
    accepted_at=st.integers(0, 2**42),
    records=records,
)


def message(id: str, recs: list[Any], *, item_pk: int = 7) -> UsageMessage:
    return UsageMessage(id, "acct_1", True, item_pk, START, END, 1_700_000_000, recs)


def entry_of(id: str, recs: list[Any], *, start: int = START, end: int = END) -> list[Any]:
    entry, _ = usage_entry(id, "acct_1", True, 7, start, end, 1_700_000_000, recs)
    return entry


def as_pairs(ops: dict[int, Op]) -> dict[int, tuple[int, bool]]:
    """Ops as the header spells them: {timestamp: (quantity, is_set)}."""
    return {ts: (op.value, op.is_set) for ts, op in ops.items()}


# --- round trip ----------------------------------------------------------------------------


def test_single_record_request_round_trips_without_a_records_section() -> None:
    """A single record is its own op: the message is the header alone."""
    msg = message("req_1", [(START + 5, 3, False)])
    raw = encode_usage(msg)
    assert b"\n" not in raw
    assert orjson.loads(raw) == {
        "v": 2,
        "q": [["req_1", "acct_1", True, 7, START, END, 1_700_000_000, 1, [[START + 5, 3, False]]]],
    }
    assert decode_usage(raw) == [msg]


def test_batch_request_round_trips_with_its_records_after_the_header() -> None:
    """Several records follow the header after b"\\n", as published, uncollapsed."""
    recs = [(START, 2, False), (START, 5, True), (START + 1, 1, False), (START, 1, False)]
    msg = message("req_b", recs)
    raw = encode_usage(msg)
    head, sep, tail = raw.partition(b"\n")
    assert sep == b"\n"
    assert orjson.loads(head)["q"][0][7:] == [4, [[START, 6, True], [START + 1, 1, False]]]
    assert orjson.loads(tail) == [[list(r) for r in recs]]
    assert decode_usage(raw) == [msg]


def test_several_requests_round_trip_in_order_with_records_aligned() -> None:
    """Mixed singles and batches: the records section has null for each single."""
    msgs = [
        message("a", [(START, 1, True)]),
        message("b", [(START, 1, False), (START + 3, 2, True)], item_pk=8),
        message("c", [(START + 9, 0, False)], item_pk=9),
    ]
    raw = encode_usage(*msgs)
    assert orjson.loads(raw.partition(b"\n")[2]) == [
        None,
        [[START, 1, False], [START + 3, 2, True]],
        None,
    ]
    assert decode_usage(raw) == msgs


def test_newlines_in_ids_do_not_split_the_header() -> None:
    """The header ends at the first b"\\n": orjson must escape newlines inside strings."""
    msgs = [
        message("id\nwith\nnewlines", [(START, 1, False), (START, 2, False)]),
        message("x", [(START, 4, True)]),
    ]
    raw = encode_usage(*msgs)
    assert raw.count(b"\n") == 1
    assert decode_usage(raw) == msgs


@given(st.lists(messages, min_size=1, max_size=5))
def test_any_messages_round_trip(msgs: list[UsageMessage]) -> None:
    """decode_usage inverts encode_usage; the records section is there iff it is needed."""
    raw = encode_usage(*msgs)
    assert decode_usage(raw) == msgs
    assert (b"\n" in raw) == any(len(m.records) > 1 for m in msgs)


# --- the header's ops are the collapsed records ---------------------------------------------


@given(records)
def test_header_ops_are_the_collapsed_records(recs: list[Record]) -> None:
    """The aggregator folds only the ops: they must give the records' usage map."""
    entry = decode_head(encode_usage(message("r", recs)))[0]
    ops = entry[8]
    assert entry[7] == len(recs)
    assert len({ts for ts, _, _ in ops}) == len(ops), "one op per distinct timestamp"
    assert {ts: (q, s) for ts, q, s in ops} == as_pairs(collapse_valid(recs))
    assert fold_map((ts, q, s) for ts, q, s in ops) == fold_map(recs)


@given(records)
def test_ops_of_accepts_published_ops_and_agrees_with_collapse(recs: list[Record]) -> None:
    """What the ingest publishes for valid records passes the aggregator's check unchanged,
    before and after the JSON trip."""
    expected = collapse(recs, START, END)
    assert ops_of(entry_of("r", recs)[8], START, END) == expected
    decoded = decode_head(encode_entries([entry_of("r", recs)], [None]))[0][8]
    assert ops_of(decoded, START, END) == expected


def test_collapsed_ops_of_a_known_request() -> None:
    """A set replaces what came before it at its timestamp; increments add (worked example)."""
    recs = [
        (START, 4, False),
        (START + 1, 9, True),
        (START, 10, True),
        (START, 3, False),
        (START + 1, 1, False),
        (START + 2, 0, False),
    ]
    ops = entry_of("r", recs)[8]
    assert {ts: (q, s) for ts, q, s in ops} == {
        START: (13, True),
        START + 1: (10, True),
        START + 2: (0, False),
    }


# --- ops_of rejects what collapse would not have produced -----------------------------------

S = START


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([], id="no-ops"),
        pytest.param([[S, 1, False], [S, 2, True]], id="duplicate-timestamp"),
        pytest.param([[S, 1, False], [S + 1, 2, False], [S + 1, 2, False]], id="duplicate-later"),
        pytest.param([[S, -1, False]], id="negative-single"),
        pytest.param([[S, 1, False], [S + 1, -1, True]], id="negative-batch"),
        pytest.param([[S - 1, 1, False]], id="before-start-single"),
        pytest.param([[END, 1, False]], id="at-end-single"),
        pytest.param([[S, 1, False], [S - 1, 1, False]], id="before-start-batch"),
        pytest.param([[S, 1, False], [END, 1, False]], id="at-end-batch"),
        pytest.param([[S, 1.0, False]], id="float-quantity-single"),
        pytest.param([[S, 1, False], [S + 1, 2.5, False]], id="float-quantity-batch"),
        pytest.param([[S, "1", False]], id="str-quantity-single"),
        pytest.param([[S, 1, False], [S + 1, "2", False]], id="str-quantity-batch"),
        pytest.param([[S, None, False]], id="null-quantity"),
        pytest.param([[float(S), 1, False]], id="float-timestamp-single"),
        pytest.param([[S, 1, False], [float(S + 1), 1, False]], id="float-timestamp-batch"),
        pytest.param([[str(S), 1, False]], id="str-timestamp"),
        pytest.param([[S, 1, "yes"]], id="str-is-set-single"),
        pytest.param([[S, 1, False], [S + 1, 1, "true"]], id="str-is-set-batch"),
        pytest.param([[S, 1, None]], id="null-is-set-single"),
        pytest.param([[S, 1, False], [S + 1, 1, None]], id="null-is-set-batch"),
        pytest.param([[S, 1, False], [S + 1, 1, [True]]], id="list-is-set-batch"),
        pytest.param([[S, 1]], id="pair-single"),
        pytest.param([[S, 1, False, 0]], id="quad-single"),
        pytest.param([[S, 1, False], [S + 1, 2]], id="pair-batch"),
        pytest.param([[S, 1, False], [S + 1, 2, False, 0]], id="quad-batch"),
        pytest.param([S], id="bare-int-single"),
        pytest.param([[S, 1, False], S + 1], id="bare-int-batch"),
        pytest.param([None], id="null-op"),
        pytest.param([{"ts": S}], id="object-op"),
    ],
)
def test_ops_of_rejects_malformed_ops(bad: list[Any]) -> None:
    with pytest.raises(InvalidRecords):
        ops_of(bad, START, END)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([[S, 1, 1]], id="int-is-set-single"),
        pytest.param([[S, 1, 0]], id="zero-is-set-single"),
        pytest.param([[S, 1, 1.0]], id="float-is-set-single"),
        pytest.param([[S, 1, False], [S + 1, 1, 1]], id="int-is-set-batch"),
        pytest.param([[S, 1, 0], [S + 1, 1, 0]], id="zero-is-set-batch"),
    ],
)
def test_ops_of_rejects_numbers_as_is_set(bad: list[Any]) -> None:
    """Only JSON true/false are an is_set; a number is a producer bug, not a set."""
    with pytest.raises(InvalidRecords):
        ops_of(bad, START, END)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([[S, True, True], [S + 1, 2, False]], id="bool-quantity-batch"),
        pytest.param([[True, 1, False], [S, 2, False]], id="bool-timestamp-batch"),
    ],
)
def test_ops_of_rejects_bools_as_numbers_with_several_ops(bad: list[Any]) -> None:
    """A bool quantity or timestamp is rejected alone; it must be rejected in a batch too."""
    with pytest.raises(InvalidRecords):
        ops_of([bad[0]], 0, END)  # the single-op path: rejected (this part holds)
    with pytest.raises(InvalidRecords):
        ops_of(bad, 0, END)


def test_ops_of_bounds_are_half_open() -> None:
    """The period is [start, end): both ends, single and batch paths."""
    assert ops_of([[START, 1, False]], START, END) == {START: Op(False, 1)}
    assert ops_of([[END - 1, 1, True]], START, END) == {END - 1: Op(True, 1)}
    assert ops_of([[START, 1, False], [END - 1, 2, True]], START, END) == {
        START: Op(False, 1),
        END - 1: Op(True, 2),
    }


# --- decode_head and records_of -------------------------------------------------------------

GOOD_ENTRY = ["id", "acct", True, 7, START, END, 1, 1, [[START, 1, False]]]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\n[[1, 2, false]]", id="empty-header"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"v": 1, "q": []}', id="v1-empty"),
        pytest.param(orjson.dumps({"v": 1, "q": [GOOD_ENTRY]}), id="v1-with-entry"),
        pytest.param(orjson.dumps({"q": [GOOD_ENTRY]}), id="no-version"),
        pytest.param(orjson.dumps({"v": "2", "q": [GOOD_ENTRY]}), id="str-version"),
        pytest.param(b'{"v": 2}', id="no-q"),
        pytest.param(b'{"v": 2, "q": []}', id="no-requests"),
        pytest.param(b'{"v": 2, "q": null}', id="null-q"),
        pytest.param(b'{"v": 2, "q": {"0": 1}}', id="object-q"),
        pytest.param(orjson.dumps({"v": 2, "q": [{"id": "x"}]}), id="entry-object"),
        pytest.param(orjson.dumps({"v": 2, "q": ["x"]}), id="entry-str"),
        pytest.param(orjson.dumps({"v": 2, "q": [GOOD_ENTRY[:8]]}), id="entry-8"),
        pytest.param(orjson.dumps({"v": 2, "q": [[*GOOD_ENTRY, 0]]}), id="entry-10"),
        pytest.param(orjson.dumps({"v": 2, "q": [[1, *GOOD_ENTRY[1:]]]}), id="id-int"),
        pytest.param(orjson.dumps({"v": 2, "q": [[None, *GOOD_ENTRY[1:]]]}), id="id-null"),
        pytest.param(orjson.dumps({"v": 2, "q": [GOOD_ENTRY, GOOD_ENTRY[:3]]}), id="second-bad"),
        pytest.param(b'{"v": 2, "q": [' + orjson.dumps(GOOD_ENTRY) + b"\n]}", id="cut-header"),
    ],
)
def test_decode_head_rejects_what_is_not_a_v2_message(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_head(raw)


def test_decode_head_reads_only_the_header() -> None:
    """The aggregator never parses the records section, so garbage there cannot hurt it."""
    head = orjson.dumps({"v": 2, "q": [GOOD_ENTRY, ["id2", *GOOD_ENTRY[1:]]]})
    assert decode_head(head) == [GOOD_ENTRY, ["id2", *GOOD_ENTRY[1:]]]
    assert decode_head(head + b"\n{not json") == [GOOD_ENTRY, ["id2", *GOOD_ENTRY[1:]]]


def test_records_of_returns_each_requests_records() -> None:
    """Batches come from the records section, singles from their op in the header."""
    batch_a = [(START, 1, False), (START, 2, True), (START + 1, 3, False)]
    batch_b = [(START + 4, 0, True), (START + 4, 6, False)]
    raw = encode_usage(
        message("s1", [(START + 2, 9, True)]),
        message("b1", batch_a),
        message("s2", [(START + 3, 5, False)]),
        message("b2", batch_b),
    )
    assert records_of(raw, 0) == [[START + 2, 9, True]]
    assert records_of(raw, 1) == [list(r) for r in batch_a]
    assert records_of(raw, 2) == [[START + 3, 5, False]]
    assert records_of(raw, 3) == [list(r) for r in batch_b]


def test_records_of_a_message_of_singles_only() -> None:
    raw = encode_usage(message("s1", [(START, 1, False)]), message("s2", [(START, 2, True)]))
    assert b"\n" not in raw
    assert records_of(raw, 1) == [[START, 2, True]]


# --- decode_requests (the aggregator's reader) ----------------------------------------------


def test_decode_requests_reads_every_request_of_a_message() -> None:
    recs_a = [(START, 1, False), (START, 2, False), (START + 1, 4, True)]
    recs_b = [(START + 7, 5, True)]
    entry_a, batched_a = usage_entry("req_a", "acct_a", True, 11, START, END, 100, recs_a)
    entry_b, batched_b = usage_entry("req_b", "acct_b", False, 12, START, END, 101, recs_b)
    raw = encode_entries([entry_a, entry_b], [batched_a, batched_b])

    a, b = decode_requests(raw, 3, 42)

    assert (a.id, a.account_id, a.livemode, a.item_pk, a.accepted_at) == (
        "req_a",
        "acct_a",
        True,
        11,
        100,
    )
    assert (b.id, b.account_id, b.livemode, b.item_pk, b.accepted_at) == (
        "req_b",
        "acct_b",
        False,
        12,
        101,
    )
    for r, index in ((a, 0), (b, 1)):
        assert (r.partition, r.offset, r.index, r.raw) == (3, 42, index, raw)
        assert (r.period_start, r.period_end, r.error) == (START, END, None)
    assert (a.count, b.count) == (3, 1)
    assert a.window == (11, START)
    assert a.ops == {START: Op(False, 3), START + 1: Op(True, 4)}
    assert b.ops == {START + 7: Op(True, 5)}
    assert orjson.loads(a.payload) == [[START, 3, False], [START + 1, 4, True]]
    assert orjson.loads(b.payload) == [[START + 7, 5, True]]
    assert a.records() == [list(r) for r in recs_a]
    assert b.records() == [list(r) for r in recs_b]


@given(st.lists(messages, min_size=1, max_size=4), st.integers(0, 63), st.integers(0, 2**40))
def test_decode_requests_agrees_with_the_published_requests(
    msgs: list[UsageMessage], partition: int, offset: int
) -> None:
    """Every valid request decodes with the ops ``collapse`` gives its records."""
    raw = encode_usage(*msgs)
    requests = decode_requests(raw, partition, offset)
    assert [r.id for r in requests] == [m.id for m in msgs]
    for m, r in zip(msgs, requests, strict=True):
        assert r.error is None
        assert r.ops == collapse(m.records, START, END)
        assert r.count == len(m.records)
        assert (r.partition, r.offset, r.livemode, r.account_id) == (
            partition,
            offset,
            m.livemode,
            m.account_id,
        )
        assert [tuple(x) for x in r.records()] == m.records


def _other(entry: list[Any], index: int, value: Any) -> list[Any]:
    return [*entry[:index], value, *entry[index + 1 :]]


GOOD = entry_of("good", [(START, 1, False), (START + 1, 2, False)])


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(entry_of("bad", [(END, 1, False), (START, 2, False)]), id="ts-at-end"),
        pytest.param(entry_of("bad", [(START - 1, 1, False)]), id="ts-before-start-single"),
        pytest.param(entry_of("bad", [(START, 1, False), (START + 1, -2, True)]), id="negative"),
        pytest.param(_other(GOOD, 8, [[START, 1, False], [START, 1, True]]), id="duplicate-ts"),
        pytest.param(_other(GOOD, 8, []), id="no-ops"),
        pytest.param(_other(GOOD, 8, None), id="ops-null"),
        pytest.param(_other(GOOD, 8, {"a": 1}), id="ops-object"),
        pytest.param(_other(GOOD, 7, 1), id="more-ops-than-records"),
        pytest.param(_other(GOOD, 7, "2"), id="count-str"),
        pytest.param(_other(GOOD, 3, "7"), id="item-pk-str"),
        pytest.param(_other(GOOD, 4, float(START)), id="start-float"),
        pytest.param(_other(GOOD, 5, None), id="end-null"),
        pytest.param(_other(GOOD, 6, 1.5), id="accepted-at-float"),
        pytest.param(_other(GOOD, 3, 2**63), id="item-pk-over-bigint"),
        pytest.param(_other(GOOD, 4, 2**64 - 1), id="start-over-bigint"),
        pytest.param(_other(GOOD, 5, 2**63), id="end-over-bigint"),
        pytest.param(_other(GOOD, 6, 2**63), id="accepted-at-over-bigint"),
        pytest.param(_other(GOOD, 7, 2**31), id="count-over-int32"),
        pytest.param(entry_of("bad", []), id="no-records"),
    ],
)
def test_a_bad_request_is_dead_lettered_alone(bad: list[Any]) -> None:
    """One bad request must not take the message's other requests down with it."""
    raw = encode_entries([bad, GOOD], [None, None])
    first, second = decode_requests(raw, 0, 5)
    assert first.ops is None
    assert isinstance(first.error, str) and first.error
    assert second.error is None
    assert second.ops == {START: Op(False, 1), START + 1: Op(False, 2)}


def test_decode_requests_raises_on_an_undecodable_message() -> None:
    with pytest.raises(ValueError, match="undecodable"):
        decode_requests(b'{"v": 1, "q": []}', 0, 0)


def test_livemode_is_true_only_for_json_true() -> None:
    """A non-bool livemode must never be read as live (it would bill live usage)."""
    raw = encode_entries([_other(GOOD, 2, 1), _other(GOOD, 2, "true")], [None, None])
    assert [r.livemode for r in decode_requests(raw, 0, 0)] == [False, False]


# --- usage_entry on records the ingest should never have accepted ---------------------------


@pytest.mark.parametrize(
    "recs",
    [
        pytest.param([(S, 1, False), (S, "2", False)], id="str-quantity-same-ts"),
        pytest.param([(S, 1, True), (S, "2", False)], id="str-quantity-after-set"),
        pytest.param([(S + 1, 1, False), ("x", 2, False), (S + 1, 3, False)], id="str-timestamp"),
        pytest.param([(S, 1)], id="pair-single"),
        pytest.param([(S, 1, False), (S, 2)], id="pair-batch"),
        pytest.param([(S, 1, False), (S, 2, False, True)], id="quad-batch"),
    ],
)
def test_uncollapsible_records_are_passed_through_and_dead_lettered(recs: list[Any]) -> None:
    """The producer must not fail: the records go out as the ops and the aggregator rejects
    that request, keeping its records for the dead letter."""
    entry, batched = usage_entry("bad", "acct", True, 7, START, END, 1, recs)
    assert entry[7] == len(recs)
    assert entry[8] == recs
    assert batched == (recs if len(recs) > 1 else None)
    raw = encode_entries([entry, GOOD], [batched, None])
    bad, good = decode_requests(raw, 1, 2)
    assert bad.ops is None
    assert isinstance(bad.error, str) and bad.error
    assert bad.count == len(recs)
    assert bad.records() == [list(r) for r in recs]
    assert good.error is None
    assert good.ops == {START: Op(False, 1), START + 1: Op(False, 2)}


def test_request_records_of_a_corrupt_records_section_is_empty() -> None:
    """Dead-lettering must not crash on a message whose records section is broken."""
    raw = encode_entries([GOOD], [[(START, 1, False), (START + 1, 2, False)]])
    head = raw.partition(b"\n")[0]
    (request,) = decode_requests(head + b"\n[[1, 2", 0, 0)
    assert request.ops is not None
    assert Request.records(request) == []
