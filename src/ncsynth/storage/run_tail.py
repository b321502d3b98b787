"""A killed run's tail made consistent: every stream's columns end at the same event.

Bluesky emits the stream_datum that references a frame before the event it belongs to
(``bluesky.bundlers.RunBundler.save`` and ``collect``: the asset documents, then the event or
event page), so a process killed between the two leaves a journal whose last frame
reference has no event; a torn last line can cut an event off the same way. Rebuilt as it
is, the run holds one more row of frames than of event data, and ``run.primary.read()``
fails in xarray ("Cannot specify dim0 when the arrays have different left-most dimensions").

:func:`trim_unmatched_tail` ends each stream at its last event whose external data are all
referenced: with E events and R_k rows referenced for each external data key k of the
stream, the first N = min(E, R_k) events and the first N rows of every key are kept (a
stream_datum that spans row N is cut there), the rest is left out. It is not completed the
other way (an event made up for a referenced frame): the event's other readings, its time
and timestamps were never emitted. A frame left out stays in the detector's file; the
returned :class:`LeftOut` names the file and the rows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import NamedTuple


class LeftOut(NamedTuple):
    """What :func:`trim_unmatched_tail` left out of one stream.

    ``stream``: the stream's name; ``kept``: events kept (N); ``events``: events left out (had
    no reference to some external data); ``rows``: data key -> [(file URI, first row, end
    row)] of the frames referenced after the last kept event (still in those files).
    """

    stream: str
    kept: int
    events: int
    rows: dict

    def __str__(self) -> str:
        parts = [f"{self.stream}: {self.kept} events kept"]
        if self.events:
            parts.append(f"{self.events} event(s) whose frames were never referenced left out")
        for key, spans in self.rows.items():
            count = sum(stop - start for _, start, stop in spans)
            where = ", ".join(f"{uri} rows {start}..{stop - 1}" for uri, start, stop in spans)
            parts.append(f"{count} frame(s) of {key} journaled without their event left out "
                         f"(still in {where})")
        return ", ".join(parts)


def _event_count(name: str, doc: dict) -> int:
    return len(doc["seq_num"]) if name == "event_page" else 1


def _rows(doc: dict) -> int:
    return doc["indices"]["stop"] - doc["indices"]["start"]


def trim_unmatched_tail(docs: list[tuple[str, dict]]) -> tuple[list[tuple[str, dict]], list[LeftOut]]:
    """``docs`` (a run's documents, in journal order) with each stream ended at its last event
    whose external data are all referenced (see the module docstring), and one
    :class:`LeftOut` per stream that lost anything. Documents are copied where cut, never
    changed in place; ``docs`` itself is returned when nothing is left out."""
    descriptors = {doc["uid"]: doc for name, doc in docs if name == "descriptor"}
    key_of = {doc["uid"]: doc["data_key"] for name, doc in docs if name == "stream_resource"}
    uri_of = {doc["uid"]: doc.get("uri", "?") for name, doc in docs if name == "stream_resource"}
    events: Counter = Counter()
    rows: dict[str, Counter] = defaultdict(Counter)
    for name, doc in docs:
        if name in ("event", "event_page"):
            events[doc["descriptor"]] += _event_count(name, doc)
        elif name == "stream_datum" and doc["stream_resource"] in key_of:
            rows[doc["descriptor"]][key_of[doc["stream_resource"]]] += _rows(doc)
    keep = {}
    for uid, descriptor in descriptors.items():
        external = [key for key, info in descriptor["data_keys"].items() if info.get("external") == "STREAM:"]
        keep[uid] = min([events[uid], *(rows[uid][key] for key in external)])
    if all(events[uid] == n and all(r == n for r in rows[uid].values()) for uid, n in keep.items()):
        return docs, []

    kept_docs = []
    events_seen: Counter = Counter()
    rows_seen: dict[str, Counter] = defaultdict(Counter)
    left_rows: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for name, doc in docs:
        uid = doc.get("descriptor")
        if name in ("event", "event_page") and uid in keep:
            room = keep[uid] - events_seen[uid]
            count = _event_count(name, doc)
            events_seen[uid] += count
            if room >= count:
                kept_docs.append((name, doc))
            elif room > 0:
                kept_docs.append((name, _first_events(doc, room)))
        elif name == "stream_datum" and uid in keep and doc["stream_resource"] in key_of:
            key = key_of[doc["stream_resource"]]
            room = keep[uid] - rows_seen[uid][key]
            count = _rows(doc)
            rows_seen[uid][key] += count
            if room >= count:
                kept_docs.append((name, doc))
                continue
            if room > 0:
                kept_docs.append((name, _first_rows(doc, room)))
            start, stop = doc["indices"]["start"] + max(room, 0), doc["indices"]["stop"]
            left_rows[uid][key].append((uri_of[doc["stream_resource"]], start, stop))
        else:
            kept_docs.append((name, doc))
    left_out = [LeftOut(descriptors[uid]["name"], n, events[uid] - n,
                        {key: spans for key, spans in left_rows[uid].items()})
                for uid, n in keep.items() if events[uid] > n or uid in left_rows]
    return kept_docs, left_out


def _first_events(page: dict, n: int) -> dict:
    """The event page's first ``n`` rows."""
    cut = {key: page[key][:n] for key in ("time", "uid", "seq_num")}
    for field in ("data", "timestamps", "filled"):
        cut[field] = {key: values[:n] for key, values in page.get(field, {}).items()}
    return {**page, **cut}


def _first_rows(datum: dict, n: int) -> dict:
    """The stream_datum's first ``n`` rows (indices and seq_nums cut alike)."""
    indices, seq_nums = datum["indices"], datum["seq_nums"]
    return {**datum, "indices": {"start": indices["start"], "stop": indices["start"] + n},
            "seq_nums": {"start": seq_nums["start"], "stop": seq_nums["start"] + n}}
