"""Maintenance window specs: the grammar, and when a window is open, opens and closes."""

from __future__ import annotations

from datetime import datetime

import pytest

from wfed.windows import (
    MAX_WINDOWS,
    QueueWindows,
    WindowGate,
    WindowSpecError,
    is_open,
    last_closed,
    next_opening,
    open_window,
    parse_window,
    parse_windows,
)

PARIS_SAT = "sat 02:00-05:00 Europe/Paris"


def utc(*parts: int) -> datetime:
    return datetime(*parts)


@pytest.mark.parametrize(
    ("spec", "days", "start", "end", "zone"),
    [
        (PARIS_SAT, {5}, 120, 300, "Europe/Paris"),
        ("SAT,Sun 02:00-05:00 Europe/Paris", {5, 6}, 120, 300, "Europe/Paris"),
        ("mon-fri 22:00-02:00", {0, 1, 2, 3, 4}, 1320, 120, "UTC"),
        ("fri-mon 9:30-10:00 UTC", {4, 5, 6, 0}, 570, 600, "UTC"),
        ("daily 00:00-24:00 America/New_York", set(range(7)), 0, 1440, "America/New_York"),
        ("* 23:00-01:00", set(range(7)), 1380, 60, "UTC"),
        ("  sun   02:00 - 05:00   Asia/Tokyo ", {6}, 120, 300, "Asia/Tokyo"),
    ],
)
def test_specs_parse(spec: str, days: set[int], start: int, end: int, zone: str) -> None:
    """Day names, lists, ranges (wrapping too), daily/*, times and an optional zone."""
    window = parse_window(spec)
    assert (window.days, window.start, window.end, window.zone) == (days, start, end, zone)
    assert window.spec == spec.strip()


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("saturday 02:00-05:00", "'saturday' is not a day"),
        ("sat 2am-5am", "cannot read window"),
        ("sat 24:00-05:00", "'24:00' is not a time of day"),
        ("sat 02:60-05:00", "'02:60' is not a time of day"),
        ("sat 02:00-25:00", "'25:00' is not a time of day"),
        ("sat 02:00-02:00", "opens and closes at the same time"),
        ("sat 02:00-05:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("sat 02:00-05:00 ../../etc/passwd", "unknown time zone"),
        ("sat 02:00-05:00 Europe", "unknown time zone 'Europe'"),
        ("sat 02:00-05:00 Europe/Paris extra", "cannot read window"),
        ("", "cannot read window"),
        (42, "a window is a string, not int 42"),
        ("sat 02:00-05:00 " + "A" * 200, "longer than 100 characters"),
    ],
)
def test_bad_specs_name_the_problem(value: object, names: str) -> None:
    """A spec that cannot be read raises WindowSpecError saying what is wrong."""
    with pytest.raises(WindowSpecError, match=names.replace("(", r"\(").replace(".", r"\.")):
        parse_window(value)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("sat 02:00-05:00", "must be a list of strings"),
        ({"sat": "02:00"}, "must be a list of strings"),
        (["sat 02:00-05:00"] * (MAX_WINDOWS + 1), f"at most {MAX_WINDOWS}"),
        (["sat 02:00-05:00", None], "a window is a string, not NoneType"),
    ],
)
def test_bad_lists_are_refused(value: object, names: str) -> None:
    """A windows value that is not a short list of specs is refused, bounded."""
    with pytest.raises(WindowSpecError, match=names) as raised:
        parse_windows(value)
    assert len(str(raised.value)) < 300


def test_none_and_empty_are_no_windows() -> None:
    """NULL and [] restrict nothing: always open."""
    assert parse_windows(None) == ()
    assert parse_windows([]) == ()
    assert is_open((), utc(2026, 11, 30, 12, 0))
    assert WindowGate().closed(utc(2026, 11, 30, 12, 0)) is None


def test_open_and_next_opening_in_winter() -> None:
    """Paris is UTC+1 in November: sat 02:00-05:00 is 01:00-04:00 UTC."""
    window = parse_window(PARIS_SAT)
    assert window.open_at(utc(2026, 11, 28, 0, 59)) is None
    assert window.open_at(utc(2026, 11, 28, 1, 0)) == (utc(2026, 11, 28, 1), utc(2026, 11, 28, 4))
    assert window.open_at(utc(2026, 11, 28, 3, 59)) is not None
    assert window.open_at(utc(2026, 11, 28, 4, 0)) is None  # the closing is excluded
    assert window.next_opening(utc(2026, 11, 28, 2, 0)) == utc(2026, 12, 5, 1, 0)
    assert window.next_opening(utc(2026, 11, 27, 9, 0)) == utc(2026, 11, 28, 1, 0)
    assert window.last_closing(utc(2026, 11, 30, 0, 0)) == utc(2026, 11, 28, 4, 0)


def test_crossing_midnight_belongs_to_the_opening_day() -> None:
    """`fri 22:00-02:00` opens Friday night and closes Saturday 02:00."""
    window = parse_window("fri 22:00-02:00")
    friday_night = utc(2026, 11, 27, 23, 0)
    assert window.open_at(friday_night) == (utc(2026, 11, 27, 22), utc(2026, 11, 28, 2))
    assert window.open_at(utc(2026, 11, 28, 1, 59)) is not None
    assert window.open_at(utc(2026, 11, 28, 2, 0)) is None
    # Thursday night is not a Friday window, even though it ends on a Friday.
    assert window.open_at(utc(2026, 11, 27, 1, 0)) is None


def test_whole_day_until_midnight() -> None:
    """`24:00` closes at the next midnight."""
    window = parse_window("sun 00:00-24:00")
    assert window.open_at(utc(2026, 11, 29, 23, 59)) == (utc(2026, 11, 29), utc(2026, 11, 30))
    assert window.open_at(utc(2026, 11, 30, 0, 0)) is None


def test_spring_forward_day_is_shorter() -> None:
    """On 29 March 2026 Paris skips 02:00-03:00: sun 02:00-05:00 lasts two hours, and its
    skipped opening is read with the winter offset (01:00 UTC, when the clocks jump)."""
    window = parse_window("sun 02:00-05:00 Europe/Paris")
    assert window.open_at(utc(2026, 3, 29, 1, 30)) == (utc(2026, 3, 29, 1), utc(2026, 3, 29, 3))
    # The week after, summer time: 00:00-03:00 UTC.
    assert window.next_opening(utc(2026, 3, 29, 2)) == utc(2026, 4, 5, 0, 0)


def test_fall_back_day_is_longer() -> None:
    """On 25 October 2026 Paris repeats 02:00-03:00: sun 02:00-05:00 opens at the first
    02:00 (summer time) and closes at 05:00 winter time, four hours later."""
    window = parse_window("sun 02:00-05:00 Europe/Paris")
    assert window.open_at(utc(2026, 10, 25, 3, 30)) == (utc(2026, 10, 25), utc(2026, 10, 25, 4))


def test_window_inside_a_skipped_hour_keeps_its_length() -> None:
    """A window wholly inside the skipped hour is read with the winter offset: it opens
    at 01:10 UTC (03:10 summer time) for its forty minutes."""
    window = parse_window("sun 02:10-02:50 Europe/Paris")
    assert window.open_at(utc(2026, 3, 29, 1, 30)) == (
        utc(2026, 3, 29, 1, 10),
        utc(2026, 3, 29, 1, 50),
    )
    assert window.next_opening(utc(2026, 3, 29, 2)) == utc(2026, 4, 5, 0, 10)


def test_several_windows_open_close_and_next() -> None:
    """A set is open when any window is; the next opening is the earliest; the window a
    workflow is halted by is the one that closed last."""
    windows = parse_windows([PARIS_SAT, "sun 02:00-05:00 Europe/Paris"])
    assert open_window(windows, utc(2026, 11, 29, 2)) == (windows[1], utc(2026, 11, 29, 4))
    assert next_opening(windows, utc(2026, 11, 28, 5)) == (windows[1], utc(2026, 11, 29, 1))
    assert last_closed(windows, utc(2026, 11, 28, 5)) == windows[0]
    assert last_closed(windows, utc(2026, 11, 30, 5)) == windows[1]


def test_gate_needs_both_queue_and_own_windows_open() -> None:
    """With queue and own windows, a workflow runs where they overlap, and the gate's
    next opening is the first moment both are open."""
    gate = WindowGate(
        queue=parse_windows(["sat 00:00-24:00 UTC"]),
        own=parse_windows(["daily 03:00-04:00 UTC"]),
    )
    friday_3am = utc(2026, 11, 27, 3, 30)
    closed = gate.closed(friday_3am)
    assert closed is not None
    assert closed.window is not None
    assert closed.window.spec == "sat 00:00-24:00 UTC"
    assert closed.opens_at == utc(2026, 11, 28, 3, 0)
    assert gate.closed(utc(2026, 11, 28, 3, 30)) is None
    own_closed = gate.closed(utc(2026, 11, 28, 5, 0))
    assert own_closed is not None
    assert own_closed.window is not None
    assert own_closed.window.spec == "daily 03:00-04:00 UTC"
    assert own_closed.opens_at == utc(2026, 12, 5, 3, 0)


def test_gate_whose_windows_never_overlap_has_no_opening() -> None:
    """Windows that never overlap give no next opening (None), rather than looping."""
    gate = WindowGate(
        queue=parse_windows(["sat 01:00-02:00"]), own=parse_windows(["sun 01:00-02:00"])
    )
    closed = gate.closed(utc(2026, 11, 27))
    assert closed is not None
    assert closed.opens_at is None


def test_queue_windows_filter_the_queues_to_claim_from() -> None:
    """Queues without windows are always open; a queue's windows decide for it."""
    queues = QueueWindows.parse({"maint": [PARIS_SAT]})
    saturday_2am_paris = utc(2026, 11, 28, 1, 0)
    assert queues.open_queues(["default", "maint"], saturday_2am_paris) == ["default", "maint"]
    assert queues.open_queues(["default", "maint"], utc(2026, 11, 28, 4, 0)) == ["default"]
