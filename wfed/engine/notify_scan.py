"""Reading `workflow_events` in id order without skipping one committed out of order.

Ids are handed out when a row is inserted, not when its transaction commits: event 41 may
become visible after event 42 was read. A reader that only remembered "everything up to
42 is read" would skip 41 for ever. So the scan keeps two positions:

- `read_to`: the highest id it has read; the next read is of ids above it;
- `settled`: every id up to it was read, or was missing for `settle` seconds — long
  enough for any transaction that took it to have committed or rolled back (a rolled
  back INSERT, a deleted event or a sequence's jump leave ids that never appear).

An id below `read_to` not read yet is a gap; each read also asks for the gaps again. Only
`settled` is stored (the webhooks' cursors): a daemon that starts again reads from there,
and the unique key on deliveries refuses what was recorded already. Pure, with the
monotonic time given, so tests drive it without waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

GAPS_ASKED_MAX = 500
"""Gaps asked for again per read, the oldest first (the rest wait their turn)."""
GAPS_KEPT_MAX = 10_000
"""Gaps remembered at most; beyond, the oldest are given up (a burst of rollbacks)."""


@dataclass
class EventScan:
    """Where a daemon's reading of the events stands."""

    settled: int
    read_to: int = -1
    gaps: dict[int, float] = field(default_factory=dict)
    """Missing id -> when it was first seen missing (monotonic seconds)."""
    read: set[int] = field(default_factory=set)
    """Ids above `settled` read already."""

    def __post_init__(self) -> None:
        self.read_to = max(self.read_to, self.settled)

    def copy(self) -> EventScan:
        return EventScan(self.settled, self.read_to, dict(self.gaps), set(self.read))

    def gaps_to_ask(self) -> list[int]:
        return sorted(self.gaps)[:GAPS_ASKED_MAX]

    def take(self, ids: Iterable[int], now: float, settle: float) -> list[int]:
        """Take the ids a read returned; returns those not read before, in order, and
        moves `settled` up past what is read and the gaps older than `settle`."""
        new = sorted(i for i in set(ids) if i > self.settled and i not in self.read)
        for i in new:
            self.read.add(i)
            self.gaps.pop(i, None)
        top = max(new, default=self.read_to)
        # A jump of ids larger than the gaps kept (a sequence restarted higher): only the
        # nearest ids can belong to transactions still in flight.
        for missing in range(max(self.read_to + 1, top - GAPS_KEPT_MAX), top):
            if missing not in self.read:
                self.gaps[missing] = now
        self.read_to = max(self.read_to, top)
        if len(self.gaps) > GAPS_KEPT_MAX:
            for oldest in sorted(self.gaps)[: len(self.gaps) - GAPS_KEPT_MAX]:
                del self.gaps[oldest]
        self._settle(now, settle)
        return new

    def _settle(self, now: float, settle: float) -> None:
        while self.settled < self.read_to:
            following = self.settled + 1
            if following in self.read:
                self.read.discard(following)
            elif following in self.gaps:
                if now - self.gaps[following] < settle:
                    return
                del self.gaps[following]
            else:
                # Ids given up (not kept as gaps): nothing to wait for up to the next id
                # known, read or missing.
                known = min(
                    min(self.gaps, default=self.read_to), min(self.read, default=self.read_to)
                )
                self.settled = max(following, min(known, self.read_to + 1) - 1)
                continue
            self.settled = following
