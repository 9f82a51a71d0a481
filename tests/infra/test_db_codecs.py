"""How every role's connections read and write json and jsonb (``infra.db``): the binary
format both ways — parameters, arrays, results and ``COPY`` — and lz4 for new TOAST values
where the server has it, for the life of each pooled session."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

# JSON values Postgres stores as given: no NUL in strings (jsonb refuses \u0000), integers
# within int64 and no floats (jsonb keeps numerics, whose round trip is not Python's float).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(value=_JSON)
@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_jsonb_and_json_round_trip_as_parameters_and_results(
    pool: asyncpg.Pool, value: Any
) -> None:
    doc = {"v": value}  # a document, so that None is JSON null and not SQL NULL
    row = await pool.fetchrow(
        "SELECT $1::jsonb AS b, $1::jsonb::text AS b_text, $2::json AS j, $3::jsonb[] AS arr,"
        " jsonb_build_object('w', $1::jsonb -> 'v') AS built",
        doc,
        doc,
        [doc, {"k": doc}],
    )
    assert row["b"] == doc
    assert orjson.loads(row["b_text"]) == doc  # the server parsed the JSON we meant
    assert row["j"] == doc
    assert row["arr"] == [doc, {"k": doc}]
    assert row["built"] == {"w": value}


async def test_copy_writes_jsonb_that_reads_back_and_queries_as_written(
    pool: asyncpg.Pool,
) -> None:
    payload = {"object": "invoice", "total": 2609, "lines": {"data": [{"d": "2 × API"}]}}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE copied (id text, data jsonb) ON COMMIT DROP")
        await conn.copy_records_to_table(
            "copied", columns=("id", "data"), records=[("a", payload), ("b", [1, "x", None])]
        )
        rows = await conn.fetch("SELECT id, data, data->>'object' AS kind FROM copied ORDER BY id")
    assert [(r["id"], r["data"], r["kind"]) for r in rows] == [
        ("a", payload, "invoice"),
        ("b", [1, "x", None], None),
    ]


async def test_sessions_compress_new_toast_values_with_lz4_when_the_server_has_it(
    pool: asyncpg.Pool,
) -> None:
    has_lz4 = await pool.fetchval(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    )
    expected = "lz4" if has_lz4 else "pglz"
    big = {"text": "vinr invoice line " * 400}  # ~7 KB: compressed inline
    for _ in range(3):  # the setting survives the pool's reset between acquisitions
        async with pool.acquire() as conn, conn.transaction():
            assert await conn.fetchval("SHOW default_toast_compression") == expected
            await conn.execute("CREATE TEMP TABLE big (data jsonb) ON COMMIT DROP")
            await conn.execute("INSERT INTO big VALUES ($1)", big)
            assert await conn.fetchval("SELECT pg_column_compression(data) FROM big") == expected
            assert await conn.fetchval("SELECT data FROM big") == big
