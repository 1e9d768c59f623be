"""Whether Weave's IPAM can allocate, from its report (multi-node recordings)."""

from weavenomad.clients.weave_ipam import ipam_wait, same_name_peers


def report(entries=(), targets=(), established=(), paxos=None, failed=()):
    connections = [{"Address": f"{a}:6783", "State": "established", "Info": ""}
                   for a in established]
    connections += [{"Address": f"{a}:6783", "State": "failed", "Info": info}
                    for a, info in failed]
    return {"Router": {"Name": "me", "Targets": list(targets), "Connections": connections},
            "IPAM": {"Entries": list(entries), "Paxos": paxos}}


def test_a_lone_first_node_of_two_or_three_waits_and_names_its_peers():
    alone = ipam_wait(report(targets=["10.0.0.2"]))
    assert alone is not None and alone.peers == ("10.0.0.2",)
    assert "needs 2 of the 2 peers" in alone.describe() and "not connected: 10.0.0.2" in \
        alone.describe()
    assert ipam_wait(report(targets=["10.0.0.2", "10.0.0.3"])) is not None
    assert ipam_wait(report(targets=["10.0.0.2", "10.0.0.3"], established=["10.0.0.3"])) is None
    assert ipam_wait(report()) is None  # a one-node overlay needs nobody
    waiting = report(targets=["10.0.0.2"], paxos={"Elector": True, "Quorum": 2, "KnownNodes": 1})
    assert ipam_wait(waiting) is not None


def test_a_ring_with_a_share_or_a_reachable_owner_allocates():
    mine = {"Peer": "me", "Size": 64, "Nickname": "n1", "IsKnownPeer": True}
    other = {"Peer": "x", "Size": 65472, "Nickname": "n2", "IsKnownPeer": True}
    assert ipam_wait(report([mine, other])) is None
    assert ipam_wait(report([other])) is None  # n2 grants space on demand
    gone = ipam_wait(report([{**other, "IsKnownPeer": False}], targets=["10.0.0.2"]))
    assert gone is not None and "unreachable (n2)" in gone.reason


def test_a_clone_is_named_by_its_address():
    clone = report(failed=[("10.0.0.2", "cannot connect to ourself, retry: never"),
                           ("10.0.0.3", "dial tcp: connection refused")])
    assert same_name_peers(clone) == ("10.0.0.2",)

