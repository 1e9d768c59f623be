"""``/v1/event/stream`` (Nomad >= 1.0): newline-delimited JSON batches ``{"Index", "Events"}``
filtered by ``topic=Topic[:key]`` and namespace, with a ``{}`` heartbeat every 10 s, as in
``fixtures/recorded/nomad-event-stream-allocation-job.ndjson``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from weavenomad_lab.nomad.state import NomadState

HEARTBEAT_SECONDS = 10.0


def parse_topics(raw: list[str]) -> dict[str, set[str]]:
    """``["Job", "Allocation:abc"]`` -> {"Job": {"*"}, "Allocation": {"abc"}}; none: all."""
    topics: dict[str, set[str]] = {}
    for item in raw or ["*"]:
        topic, _, key = item.partition(":")
        topics.setdefault(topic, set()).add(key or "*")
    return topics


def wanted(event: dict, topics: dict[str, set[str]], namespace: str) -> bool:
    if namespace != "*" and event.get("Namespace", "default") != namespace:
        return False
    keys = topics.get(event["Topic"], set()) | topics.get("*", set())
    if "*" in keys:
        return True
    return event["Key"] in keys or any(k in keys for k in event.get("FilterKeys") or [])


def stream(state: NomadState, topics: dict[str, set[str]], namespace: str,
           start: int) -> Iterator[bytes]:  # fmt: skip
    """The chunks of one subscriber, until the HTTP layer stops iterating."""
    last = start
    last_sent = time.monotonic()
    while True:
        # read the index first: a write after this point wakes the wait below
        seen = state.index
        for batch in state.events_after(last):
            last = batch["Index"]
            chosen = [e for e in batch["Events"] if wanted(e, topics, namespace)]
            if chosen:
                last_sent = time.monotonic()
                yield (json.dumps({"Index": last, "Events": chosen}) + "\n").encode()
        if time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
            last_sent = time.monotonic()
            yield b"{}\n"
        state.wait_for_change(seen, HEARTBEAT_SECONDS / 2)
