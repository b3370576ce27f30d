"""The two-way message log: every OS³P frame in and out, with its time, per station, in bounded memory.

Each station has a ring of its last ``per_station`` frames; at most ``max_stations`` stations keep a ring
(the least recently active one's ring is dropped first); a frame longer than ``max_text`` characters is kept
cut to that length and marked ``truncated``.  So the log's memory is bounded whatever the fleet does:
``max_stations × per_station × max_text`` characters at the very worst, ~``max_stations × per_station × 250``
bytes for a typical fleet (heartbeats, notifications).

The log is fed by :attr:`os3p_trio.Session.on_frames`: one call per batch of frames read or written, so it
costs a ``deque.append`` per frame and no parsing.  It lives in memory only (persistence with retention is
not implemented: the store owns durable data, and the event log there keeps what a station reported).
"""

from __future__ import annotations

import csv
import io
from collections import OrderedDict, deque
from collections.abc import Iterable

import attrs

__all__ = ["LoggedFrame", "MessageLog", "MessageLogConfig"]


@attrs.frozen(slots=True)
class MessageLogConfig:
    """Bounds of the in-memory message log (the defaults cost at most ~100 MB for a busy large fleet)."""

    #: Frames kept per station (the newest).
    per_station: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    #: Stations that keep a ring; the least recently active station's ring is dropped beyond this.
    max_stations: int = attrs.field(default=5000, validator=attrs.validators.ge(1))
    #: Characters of a frame kept (the rest is cut and the entry marked truncated).
    max_text: int = attrs.field(default=4096, validator=attrs.validators.ge(16))


@attrs.frozen(slots=True)
class LoggedFrame:
    """One frame as the log keeps it."""

    #: A number increasing over the whole log (paging: ``before=seq``; live views: ``after``).
    seq: int
    #: POSIX seconds when it was read or handed to the transport.
    time: float
    #: ``"in"`` (station → Central System) or ``"out"``.
    direction: str
    text: str
    truncated: bool


class MessageLog:
    """Per-station rings of frames (see the module docstring for the bounds)."""

    def __init__(self, config: MessageLogConfig | None = None) -> None:
        self.config = config or MessageLogConfig()
        # Entries are plain tuples (seq, time, direction, text, truncated): cheaper than objects on the hot
        # path; :meth:`entries` makes :class:`LoggedFrame` of them.
        self._rings: OrderedDict[str, deque[tuple[int, float, str, str, bool]]] = OrderedDict()
        self._seq = 0
        #: Frames recorded since start (all stations), for the operator.
        self.frames_recorded = 0

    def record(self, identity: str, direction: str, texts: Iterable[str], now: float) -> int:
        """Append a batch of frames of ``identity``; returns the ``seq`` of the last one."""
        cfg = self.config
        rings = self._rings
        ring = rings.get(identity)
        if ring is None:
            ring = rings[identity] = deque(maxlen=cfg.per_station)
            while len(rings) > cfg.max_stations:
                rings.popitem(last=False)
        else:
            rings.move_to_end(identity)
        limit = cfg.max_text
        seq = self._seq
        append = ring.append
        for text in texts:
            seq += 1
            if len(text) > limit:
                append((seq, now, direction, text[:limit], True))
            else:
                append((seq, now, direction, text, False))
        self.frames_recorded += seq - self._seq
        self._seq = seq
        return seq

    def entries(
        self,
        identity: str,
        *,
        limit: int = 100,
        before: int | None = None,
        after: int | None = None,
        direction: str | None = None,
    ) -> list[LoggedFrame]:
        """Frames of ``identity``, newest first, at most ``limit``: only those with ``seq < before`` /
        ``seq > after`` / the given ``direction`` when those are given."""
        ring = self._rings.get(identity)
        if ring is None:
            return []
        out: list[LoggedFrame] = []
        for seq, at, way, text, truncated in reversed(ring):
            if len(out) >= limit:
                break
            if before is not None and seq >= before:
                continue
            if after is not None and seq <= after:
                break
            if direction is not None and way != direction:
                continue
            out.append(LoggedFrame(seq, at, way, text, truncated))
        return out

    def forget(self, identity: str) -> None:
        """Drop a station's ring (the station was removed)."""
        self._rings.pop(identity, None)

    @property
    def stations(self) -> int:
        """Stations that have a ring now."""
        return len(self._rings)


def frames_csv(identity: str, entries: Iterable[LoggedFrame], format_time: object) -> str:
    """The entries as CSV (RFC 4180): ``seq,time,identity,direction,truncated,frame``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["seq", "time", "identity", "direction", "truncated", "frame"])
    fmt = format_time if callable(format_time) else str
    # A cell starting with = + - @ is a formula to a spreadsheet (CSV injection): quote it as text.
    cell = "'" + identity if identity[:1] in ("=", "+", "-", "@") else identity
    for e in entries:
        writer.writerow([e.seq, fmt(e.time), cell, e.direction, "true" if e.truncated else "false", e.text])
    return out.getvalue()
