"""The ``vinr`` command's presentation rules: plain tables off a terminal, sparklines, span
widths, periods, the chart's range, printable cells."""

from __future__ import annotations

import pytest

from vinr.cli.billing import MARKS, chart_until
from vinr.cli.output import Column, period, printable, span_width, sparkline, table

DAY = 86_400
T = 1_767_225_600  # 2026-01-01T00:00:00Z


def test_plain_table_is_aligned_columns_under_a_header(capsys: pytest.CaptureFixture[str]) -> None:
    table(
        (Column("ID"), Column("NAME"), Column("TOTAL", right=True)),
        [("a_1", "first", "€1.00"), ("a_22", None, "€10.00")],
        caption="never shown off a terminal",
    )
    assert capsys.readouterr().out.splitlines() == [
        "ID    NAME   TOTAL",
        "a_1   first   €1.00",
        "a_22  -      €10.00",
    ]


def test_cells_cannot_carry_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    table((Column("NAME"),), [("evil\x1b[2J\x07name",)])
    assert capsys.readouterr().out.splitlines()[1] == "evil?[2J?name"
    assert printable(None) == "-"
    assert printable("tab\there") == "tab?here"


@pytest.mark.parametrize(
    ("values", "marks"),
    [
        ([], ""),
        ([0, 0, 0], "▁▁▁"),
        ([0, 1, 0], "▁█▁"),
        ([1, 2, 4, 8], "▂▃▅█"),
        ([10, 0, 25, 40], "▃▁▆█"),
        ([1, 1000], "▂█"),  # any usage shows, however small beside the largest
    ],
)
def test_sparkline(values: list[int], marks: str) -> None:
    assert sparkline(values) == marks


@pytest.mark.parametrize(
    ("seconds", "width", "label"),
    [
        (30, 1, "1 s"),
        (48, 1, "1 s"),
        (49, 5, "5 s"),
        (3600, 300, "5 min"),  # 12 marks of 5 min; 1 min would need 60
        (DAY, 1800, "30 min"),
        (31 * DAY, DAY, "1 day"),
        (300 * DAY, 7 * DAY, "7 days"),
        (365 * DAY, 8 * DAY, "8 days"),  # whole days past the list
        (5 * 365 * DAY, 39 * DAY, "39 days"),
    ],
)
def test_span_width_is_the_roundest_that_fits(seconds: int, width: int, label: str) -> None:
    assert span_width(seconds, MARKS) == (width, label)
    assert -(-seconds // width) <= MARKS


def test_period_shows_dates_or_minutes() -> None:
    assert period(T, T + 31 * DAY) == "2026-01-01 → 2026-02-01"
    assert period(T + 3600, T + 31 * DAY + 3600) == "2026-01-01 01:00 → 2026-02-01 01:00"


@pytest.mark.parametrize(
    ("now", "last_at", "until"),
    [
        (T + 10 * DAY, None, T + 10 * DAY),  # running: up to now
        (T + 10 * DAY, T + 10 * DAY + 200, T + 10 * DAY + 201),  # a record slightly ahead
        (T + 40 * DAY, T + 3 * DAY, T + 31 * DAY),  # over: the whole period
        (T - 50 * DAY, T + 3 * DAY, T + 3 * DAY + 1),  # a test clock ahead of real time
        (T - 50 * DAY, None, T + 31 * DAY),  # … with no usage yet
    ],
)
def test_chart_range(now: int, last_at: int | None, until: int) -> None:
    assert chart_until(T, T + 31 * DAY, now, last_at) == until
