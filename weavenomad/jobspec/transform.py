"""Put a job's Docker tasks into one tenant's Weave subnet. Pure: canonical job JSON in and out.

What a task needs to land in the tenant subnet through the Weave proxy:
- ``WEAVE_CIDR=net:<subnet>`` in its environment (kept when the job already asks for an address
  inside the subnet, e.g. a static ``ip:``);
- a Docker network mode the proxy attaches: empty, ``default``, ``bridge`` or ``none``. The proxy
  skips named networks, so ``network_mode = "weave"`` (a common habit from Weave's docker plugin)
  silently keeps the task off the tenant subnet: it is removed, with a warning;
- no group network namespace (``network { mode = "bridge" }`` or CNI): Nomad then runs the task as
  ``container:<pause>``, which the proxy skips.

Anything that would place a task outside the tenant is refused rather than rewritten, because
the job's author asked for it explicitly. Non-Docker tasks are left alone, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from weavenomad import weavecidr
from weavenomad.errors import ValidationError

META_TENANT = "weavenomad.tenant"
META_SUBNET = "weavenomad.subnet"
#: Docker network modes whose containers the Weave proxy attaches (DESIGN.md)
ATTACHED_NETWORK_MODES = {"", "default", "bridge", "none"}
#: a named network that the Weave proxy skips; removing it is the fix the seed needed
WEAVE_PLUGIN_NETWORK = "weave"


@dataclass(frozen=True)
class TenantTarget:
    """Where tasks go. ``subnet`` None means Weave's default subnet."""

    label: str  # the tenant name, or the spec (net:CIDR / net:default) when given directly
    subnet: IPv4Network | None
    default_subnet: IPv4Network | None = None

    @property
    def weave_cidr(self) -> str:
        return weavecidr.for_subnet(self.subnet) if self.subnet else weavecidr.DEFAULT_TOKEN

    @property
    def subnet_text(self) -> str:
        return str(self.subnet) if self.subnet else "default"


@dataclass(frozen=True)
class TransformResult:
    job: dict
    warnings: tuple[str, ...]


def _request_fits(request: weavecidr.AddressRequest, target: TenantTarget) -> bool:
    home = target.subnet or target.default_subnet
    if request.is_default:
        return target.subnet is None
    if home is None:  # the default subnet is not known here: only net:default is provably in
        return False
    if request.is_claim:
        return request.address.ip in home
    return request.subnet.subnet_of(home)


def _check_existing_cidr(value: str, target: TenantTarget, where: str) -> None:
    try:
        parsed = weavecidr.parse(value)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.message}", hint=exc.hint) from None
    if not parsed.attach:
        raise ValidationError(
            f"{where}: WEAVE_CIDR=none keeps the task off tenant {target.label!r}'s subnet"
        )
    for request in parsed.effective_requests():
        if not _request_fits(request, target):
            raise ValidationError(
                f"{where}: WEAVE_CIDR={value!r} would place the task outside tenant "
                f"{target.label!r} ({target.subnet_text})",
                hint="remove WEAVE_CIDR from the job; weavenomad sets it",
            )


def _group_network_mode(group: dict) -> str:
    for network in group.get("Networks") or ():
        mode = (network or {}).get("Mode") or ""
        if mode not in ("", "host"):
            return mode
    return ""


def _transform_task(
    task: dict, target: TenantTarget, where: str, warnings: list[str]
) -> dict:
    if task.get("Driver") != "docker":
        warnings.append(
            f"{where} uses driver {task.get('Driver')!r}: left alone, it will not join the "
            "Weave overlay"
        )
        return task
    task = dict(task)
    config = dict(task.get("Config") or {})
    mode = str(config.get("network_mode") or "")
    if mode == WEAVE_PLUGIN_NETWORK:
        del config["network_mode"]
        warnings.append(
            f"{where}: removed network_mode = \"weave\": the Weave proxy does not attach "
            "containers on named networks, so WEAVE_CIDR would be ignored"
        )
    elif mode not in ATTACHED_NETWORK_MODES:
        raise ValidationError(
            f"{where}: network_mode = {mode!r} is not attached by the Weave proxy, so the task "
            f"would run outside tenant {target.label!r}",
            hint="remove network_mode or use bridge",
        )
    task["Config"] = config
    env = dict(task.get("Env") or {})
    existing = env.get(weavecidr.ENV_NAME)
    if existing is not None:
        _check_existing_cidr(existing, target, where)
    else:
        env[weavecidr.ENV_NAME] = target.weave_cidr
    task["Env"] = env
    return task


def apply_tenant(job: dict, target: TenantTarget) -> TransformResult:
    """Return a copy of ``job`` whose Docker tasks all run in ``target``'s subnet.

    Raises :class:`ValidationError` naming the group and task when the job would place a task
    outside the tenant. The input is not modified; only the changed parts are copied, which
    keeps large jobs fast.
    """
    warnings: list[str] = []
    job_name = job.get("ID") or job.get("Name") or "?"
    groups = []
    for group in job.get("TaskGroups") or ():
        group_name = group.get("Name", "?")
        mode = _group_network_mode(group)
        if mode:
            raise ValidationError(
                f"job {job_name!r} group {group_name!r}: network mode {mode!r} runs tasks in "
                "a network namespace the Weave proxy does not attach",
                hint="drop the group network block's mode",
            )
        tasks = [
            _transform_task(
                task, target, f"job {job_name!r} group {group_name!r} task "
                f"{task.get('Name', '?')!r}", warnings
            )
            for task in group.get("Tasks") or ()
        ]
        groups.append({**group, "Tasks": tasks})
    meta = dict(job.get("Meta") or {})
    meta[META_TENANT] = target.label
    meta[META_SUBNET] = target.subnet_text
    return TransformResult({**job, "TaskGroups": groups, "Meta": meta}, tuple(warnings))
