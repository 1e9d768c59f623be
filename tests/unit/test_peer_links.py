"""The cluster's peers in the registry and Weave kept connected to them: the pure parts
(records read from Consul KV, the connect/forget plan from Weave's report)."""

from __future__ import annotations

import json

import pytest

from weavenomad.errors import ValidationError
from weavenomad.reconcile.peerlinks import LinkPlan, plan_links
from weavenomad.tenancy.peers import (
    PeerRecord,
    decode_peer,
    decode_peers,
    encode_peer,
    peers_besides,
)

ME, N2, N3 = "aa:00:00:00:00:01", "aa:00:00:00:00:02", "aa:00:00:00:00:03"


def report(targets=(), answering=None) -> dict:
    """Weave's report as far as the plan reads it: this peer, its targets, and the peer name
    behind each established connection (inbound ones on an ephemeral port)."""
    connections = [{"Name": name, "NickName": "x", "Address": address}
                   for address, name in (answering or {}).items()]
    return {"Router": {"Name": ME, "Targets": list(targets) or None,
                       "Peers": [{"Name": N2, "Connections": [{"Name": ME,
                                                               "Address": "10.0.0.1:6783"}]},
                                 {"Name": ME, "Connections": connections or None}]}}


def test_a_recorded_peer_is_connected_and_this_node_is_not():
    records = [PeerRecord("192.168.57.11", ME, "n1"), PeerRecord("192.168.57.12", N2, "n2")]
    assert plan_links(report(), records) == LinkPlan(connect=("192.168.57.12",))


def test_a_peer_dialled_already_is_left_alone_with_or_without_its_port():
    records = [PeerRecord("192.168.57.12", N2, "n2")]
    assert plan_links(report(["192.168.57.12:6783"], {"192.168.57.12:6783": N2}),
                      records) == LinkPlan()


def test_only_a_peer_that_was_recorded_and_went_is_forgotten():
    """A launch peer that is not recorded (not bootstrapped yet) stays a target."""
    plan = plan_links(report(["192.168.57.12", "192.168.57.13:6783"]), [],
                      gone={"192.168.57.13", "192.168.57.14"})
    assert plan == LinkPlan(forget=("192.168.57.13:6783",))  # named as Weave lists it


def test_a_record_whose_address_answers_with_another_peer_name_is_not_connected():
    records = [PeerRecord("192.168.57.13", N3, "n3")]
    plan = plan_links(report(answering={"192.168.57.13:40122": "bb:00:00:00:00:09"}), records)
    assert plan.connect == () and len(plan.mismatched) == 1
    assert "192.168.57.13 answers as peer bb:00:00:00:00:09" in plan.mismatched[0]
    assert "node leave" in plan.mismatched[0]


def test_records_round_trip_and_bad_ones_are_named_by_key_without_hiding_the_others():
    good = PeerRecord("192.168.57.12", N2, "n2")
    assert decode_peer(encode_peer(good), "k") == good
    entries = [{"Key": "weavenomad/peers/x", "Value": b"{not json"},
               {"Key": "weavenomad/peers/y", "Value": json.dumps({"name": N3}).encode()},
               {"Key": f"weavenomad/peers/{N2}", "Value": encode_peer(good)}]
    records, problems = decode_peers(entries)
    assert records == [good]
    assert problems[0].startswith("Consul key weavenomad/peers/x is not JSON")
    assert "weavenomad/peers/y: address is missing" in problems[1]
    with pytest.raises(ValidationError, match="not a JSON object"):
        decode_peer(b"[]", "k")


def test_bootstrap_launches_towards_every_recorded_peer_but_itself():
    records = [PeerRecord("192.168.57.11", ME, "n1"), PeerRecord("192.168.57.12", N2, "n2")]
    assert peers_besides(records, ["192.168.57.11"]) == ("192.168.57.12",)
    assert peers_besides([], ["192.168.57.11"]) == ()
