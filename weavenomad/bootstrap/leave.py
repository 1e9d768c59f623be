"""``weavenomad node leave``: take this node out of the cluster for good.

It is ``reset --purge`` (units, masks, twins, the Nomad config, Weave, the guards) with two
differences that matter to the other nodes:

- Weave must hand this node's share of every subnet back. ``weave reset`` does that while it
  is connected to a live peer (the share goes to that peer); a Weave that is stopped, or
  connected to nobody while other peers are recorded, would take the share with it (it stays
  ``unreachable!`` on the others until a ``weave rmpeer``), so leave refuses then.
- Its record in the registry goes (just before ``weave reset``, written back if the reset
  fails), so every other reconciler forgets its address (:mod:`weavenomad.reconcile.peerlinks`).

Nomad must have stopped its allocations here first (``nomad node drain``): their twins would
go with the reconciler and the tasks lose their Weave addresses with Weave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.observe import NodeFacts, advertised_address
from weavenomad.clients.weave_ipam import host_of
from weavenomad.errors import ConflictError
from weavenomad.tenancy.peers import PeerRecord

DRAIN_HINT = "drain it first: nomad node drain -enable -self, then run node leave again"
#: Nomad's client statuses of an allocation whose tasks may still run
BUSY = ("pending", "running")


def busy_allocations(allocations: Iterable[dict]) -> list[str]:
    """The allocations Nomad still runs (or is about to) on the node, as ``job/name``. Pure."""
    return sorted(f"{a.get('JobID', '?')}/{a.get('Name') or a.get('ID', '?')}"
                  for a in allocations if a.get("ClientStatus") in BUSY)


def own_record(facts: NodeFacts) -> PeerRecord | None:
    """This node's record: by the running Weave's peer name, else by its advertised address.
    Pure."""
    name = ((facts.weave_report or {}).get("Router") or {}).get("Name")
    address = advertised_address(facts.consul_self)
    for record in facts.peer_records or []:
        if (name and record.name == name) or (not name and record.address == address):
            return record
    return None


def established(report: dict | None) -> list[str]:
    router = (report or {}).get("Router") or {}
    return [host_of(c.get("Address", "")) for c in router.get("Connections") or []
            if c.get("State") == "established"]


def check_leave(facts: NodeFacts, busy: Sequence[str] | None, nomad_error: str | None) -> None:
    """Refuse, in one line with the fix, a leave that would strand tasks or address space.
    ``busy``: the allocations Nomad runs here (None: Nomad could not be asked). Pure."""
    if busy is None:
        raise ConflictError(f"cannot tell whether Nomad still runs allocations on this node: "
                            f"{nomad_error or 'Nomad does not answer'}",
                            hint="start the Nomad agent, then " + DRAIN_HINT)
    if busy:
        shown = ", ".join(busy[:5]) + (f" (+{len(busy) - 5} more)" if len(busy) > 5 else "")
        raise ConflictError(f"Nomad still runs {len(busy)} allocation(s) on this node: {shown}",
                            hint=DRAIN_HINT)
    mine = own_record(facts)
    others = [r for r in facts.peer_records or [] if r != mine]
    if not others:
        return  # the last node: its space has nobody to go to
    if not facts.weave_running and facts.weave_router is not None:
        raise ConflictError("Weave is stopped here, so 'weave reset' cannot hand this node's "
                            "address space back to the other peers",
                            hint="start it (docker start weave), then run node leave again")
    if facts.weave_running and not established(facts.weave_report):
        raise ConflictError("Weave is connected to no other peer, so 'weave reset' cannot hand "
                            "this node's address space back (recorded peers: "
                            f"{', '.join(r.address for r in others)})",
                            hint="check 'weave status connections'; once a peer is connected, "
                                 "run node leave again")


def plan_leave(reset: st.Plan, record: PeerRecord | None) -> st.Plan:
    """``reset``'s plan (with the purge's steps) and the record's removal just before
    ``weave reset`` (at the end when Weave is gone already). Pure."""
    if record is None:
        return reset
    remove = st.Step(f"delete this node's peer record ({record.describe()}): the other nodes "
                     "forget it", st.RemovePeerRecord(record), st.WritePeerRecord(record))
    steps = list(reset.steps)
    at = next((i for i, s in enumerate(steps) if isinstance(s.action, st.WeaveReset)),
              len(steps))
    steps.insert(at, remove)
    return replace(reset, steps=tuple(steps))
