"""``weavenomad reset --purge``: besides undoing bootstrap, take away what the reconciler left
in the node's service agent and the units that run weavenomad here.

Stopping the reconciler leaves its twins and masks in Consul on purpose (answers survive a
restart of the daemon), so retiring weavenomad from a node needs this. The twins and masks are
recognised exactly as the reconciler recognises its own (:mod:`weavenomad.reconcile.
registrations`: a twin is a ``weavenomad-`` service marked ``weavenomad-managed``, a mask a
``weavenomad-mask-`` check), read and removed where they live (a Consul Enterprise namespace).

Order: the units stop first (a running reconciler would register everything again at once);
the masks go next, so Nomad's instances answer again before the twins stop answering; the
unit files go last. Nothing is half-done: the masks are registered again and the units
written back and started on a failure, and a started reconciler registers its twins again.
Left behind: Nomad's own registrations (which answer as they did before weavenomad), the
tenant registry in Consul KV (the cluster's), /etc/weavenomad and the env files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from weavenomad.bootstrap import steps as st
from weavenomad.reconcile.registrations import MASK_PREFIX, AgentService, Mask
from weavenomad.runtime.unitcheck import UnitFile, UnitSpec, UnitState
from weavenomad.tenancy.contract import held_public_name


@dataclass(frozen=True)
class InstalledUnit:
    """A unit of ours as found: its name, its file, and systemd's view (None: no systemd)."""

    name: str
    file: UnitFile
    state: UnitState | None

    @property
    def loaded(self) -> bool:
        return self.state is not None and self.state.load_state not in ("", "not-found")


@dataclass(frozen=True)
class PurgeFacts:
    twins: tuple[st.Registration, ...] = ()
    masks: tuple[Mask, ...] = ()
    #: public names of Nomad's services that 'weavenomad run' held under a private name
    held: tuple[str, ...] = ()
    units: tuple[InstalledUnit, ...] = ()


def registrations(services: dict[str, AgentService], checks: dict) -> PurgeFacts:
    """The reconciler's twins and masks among the agent's services and checks. Pure."""
    twins = tuple(st.Registration(s.id, s.namespace, s.partition)
                  for _, s in sorted(services.items()) if s.ours)
    masks = []
    for check_id, check in sorted(checks.items()):
        if not check_id.startswith(MASK_PREFIX):
            continue
        masked = services.get(check.service_id)  # a check lives where its service does
        masks.append(Mask(check_id, check.service_id, check.notes,
                          masked.namespace if masked else "", masked.partition if masked else ""))
    held = sorted({public for s in services.values()
                   if (public := held_public_name(s.name, s.meta)) is not None})
    return PurgeFacts(twins, tuple(masks), tuple(held))


def observe(agent, inspect: Callable[[UnitSpec], tuple], specs: Sequence[UnitSpec]
            ) -> PurgeFacts:
    """Read the local service agent (``agent``: a
    :class:`~weavenomad.reconcile.registrations.ServiceAgent`) and our units
    (``inspect(spec)``: :func:`weavenomad.runtime.units.inspect`)."""
    found = registrations(agent.services(), agent.checks())
    units = []
    for spec in specs:
        unit_file, state, _ = inspect(spec)
        units.append(InstalledUnit(spec.name, unit_file, state))
    return PurgeFacts(found.twins, found.masks, found.held, tuple(units))


def plan_purge(facts: PurgeFacts) -> tuple[list[st.Step], list[str]]:
    """The steps that come before reset's own, and the notes. Pure."""
    steps: list[st.Step] = []
    notes: list[str] = []
    for unit in facts.units:
        if unit.loaded:
            steps.append(st.Step(f"stop and disable {unit.name}", st.StopUnit(unit.name),
                                 st.StartUnit(unit.name)))
    if facts.masks:
        steps.append(st.Step(
            f"remove the reconciler's {len(facts.masks)} mask(s): Nomad's instances answer "
            "again", st.RemoveMasks(facts.masks), st.RegisterMasks(facts.masks),
            undo_if_failed=True))
    if facts.twins:
        steps.append(st.Step(
            f"remove the reconciler's {len(facts.twins)} twin(s)", st.RemoveTwins(facts.twins),
            notes=("the reconciler registers them again when it starts (as a rollback does)",)))
    for unit in facts.units:
        if unit.file.text is not None:
            steps.append(st.Step(f"remove the unit file {unit.file.path}",
                                 st.RemoveUnitFile(unit.file.path, unit.file.text),
                                 st.WriteUnitFile(unit.file.path, unit.file.text)))
    if (facts.twins or facts.masks) and not any(u.loaded for u in facts.units):
        notes.append("no reconciler unit is loaded here: stop a reconciler run by other means "
                     "first, or it registers its twins and masks again")
    if facts.held:
        notes.append("run by 'weavenomad run', these services are registered by Nomad under a "
                     "private name (weavenomad-hidden-...), so nothing answers for "
                     f"{', '.join(facts.held)} once their twins are gone: run their jobs again "
                     "with 'nomad job run' to publish them under their own names")
    return steps, notes
