"""Consul Enterprise: twins and masks go in the namespace and partition of Nomad's service; a
namespace the token cannot write gets neither a twin nor a mask."""

from __future__ import annotations

import dataclasses

from reconcile_support import SID_A, TWIN_A, recorded_observation, with_services

from weavenomad.errors import BackendError
from weavenomad.reconcile.apply import apply
from weavenomad.reconcile.consul import (
    ConsulAgent,
    mask_definition,
    service_definition,
    service_from_agent,
)
from weavenomad.reconcile.plan import REGISTER_MASK, REGISTER_TWIN, plan


def in_namespace(namespace="team-a", partition="part-1"):
    obs = recorded_observation()
    placed = {sid: dataclasses.replace(s, namespace=namespace, partition=partition)
              for sid, s in obs.services.items() if s.nomad_task}
    return with_services(obs, *placed.values())


def test_twin_and_mask_go_where_nomads_service_is():
    assert service_from_agent({"ID": "x", "Namespace": "team-a", "Partition": "p"}).namespace \
        == "team-a"
    result = plan(in_namespace())
    twin = next(a for a in result.actions if a.kind == REGISTER_TWIN and a.id == TWIN_A)
    mask = next(a for a in result.actions if a.kind == REGISTER_MASK and a.id == twin.requires)
    assert service_definition(twin.twin)["Namespace"] == "team-a"
    assert service_definition(twin.twin)["Partition"] == "part-1"
    assert mask_definition(mask.mask)["Namespace"] == "team-a"
    assert mask_definition(mask.mask)["ServiceID"] == SID_A
    # Consul CE: neither field, and the same digest as before namespaces were known
    plain = next(a for a in plan(recorded_observation()).actions if a.id == TWIN_A)
    assert "Namespace" not in service_definition(plain.twin)
    assert plain.twin.digest != twin.twin.digest


class RefusingApi:
    """A Consul adapter whose token cannot write namespace ``team-a``."""

    def __init__(self):
        self.registered, self.deregistered = [], []

    def service_register(self, definition, replace_existing_checks=False):
        if definition.get("Namespace") == "team-a":
            raise BackendError("Permission denied", backend="consul", status=403)
        self.registered.append(definition["ID"])

    def check_register(self, definition):
        if definition.get("Namespace") == "team-a":
            raise BackendError("Permission denied", backend="consul", status=403)
        self.registered.append(definition["ID"])

    def agent_services(self):
        return {TWIN_A: {"ID": TWIN_A, "Service": "httpbackend", "Namespace": "team-b"}}

    def agent_checks(self):
        return {}

    def service_deregister(self, service_id, namespace="", partition=""):
        self.deregistered.append((service_id, namespace, partition))
        return True


def test_a_namespace_the_token_cannot_write_gets_neither_twin_nor_mask():
    api = RefusingApi()
    result = apply(ConsulAgent(api), plan(in_namespace()))
    assert api.registered == []
    # the mask goes first and is refused: no twin beside Nomad's unmasked instance
    assert {a.kind for a, _ in result.failed} == {REGISTER_MASK}
    assert {a.kind for a in result.skipped} == {REGISTER_TWIN}  # no twin without its mask
    assert all(exc.status == 403 for _, exc in result.failed)


def test_removal_names_the_namespace_it_was_read_in():
    api = RefusingApi()
    agent = ConsulAgent(api)
    agent.services()
    agent.remove_twin(TWIN_A)
    assert api.deregistered == [(TWIN_A, "team-b", "")]
