"""What a job may ask for and still run inside its tenant: the checks ``weavenomad run`` and
``weavenomad render`` make before anything is registered. Pure: job JSON in, errors out.

Every refusal is a :class:`~weavenomad.errors.ValidationError` of one line naming the job, the
group, the task and the field. Weave's isolation is L3 only (every subnet shares one L2 and the
host is exposed on each tenant subnet), so a task is *outside its tenant* as soon as it can get
an address, a route or a network namespace that the tenant's ``WEAVE_CIDR`` did not give it.

Refused, because each one puts a task outside its tenant:

- ``WEAVE_CIDR`` set by the job with a token outside the tenant subnet: a ``net:`` subnet not
  inside it, an ``ip:`` claim whose address *or prefix* reaches beyond it (``ip:10.32.1.7/16``
  would route every other tenant's subnet over ``ethwe``), ``net:default`` for a tenant job,
  ``none``, or text with ``${…}`` (Nomad interpolates env values on the client, after us);
- a Docker ``network_mode`` the Weave proxy does not attach (``host``, ``container:…``, any named
  network), one that is not a plain string, or one built by interpolation;
- group (or task) network modes other than ``host``: ``bridge``, ``cni/…`` and ``none`` run the
  task as ``container:<pause>``, which the proxy skips;
- ``template { env = true }`` whose text names ``WEAVE_CIDR``: Nomad applies template env vars
  *after* the task's env (``taskenv.Builder``), so it would replace the tenant's value;
- ``privileged`` and ``cap_add`` of ``NET_ADMIN``, ``SYS_ADMIN`` or ``ALL``: with them a process
  re-addresses ``ethwe`` into any subnet of the shared L2;
- ``pid_mode = "host"``: the task sees every container's processes and, with the ptrace that
  Docker's default profile allows between containers, can act inside another tenant's one;
- host bind mounts of the Docker, containerd or Weave API socket (or a directory above one):
  the task could start containers with any ``WEAVE_CIDR``. Interpolated host paths are refused
  unless they start in the task's own directories, as they cannot be checked here;
- JSON job keys that differ from Nomad's field names only in letter case: Nomad's JSON decoder
  ignores case, so ``"env"`` next to ``"Env"`` would silently win over the checked value.

Warned, not refused: ``env = true`` templates whose output is known only at run time (template
actions, a source file): refusing them would refuse every job that reads secrets into its env.
The reconciler's tenant audit is the guard there: a task whose address lies outside its tenant
is never advertised.

Harmless, allowed: ``extra_hosts`` and ``dns_*`` (name resolution only, no route),
``hostname``, ``mac_address`` (``ethwe`` gets Weave's own MAC), ``ports``/``port_map``
(published on the host like any Nomad port, meant to be reachable), ``ipc_mode``/``uts_mode``,
``sysctl`` (the container's own namespace), ``ipv4_address``/``network_aliases`` (only used on
user-defined networks, which are refused anyway).

Not guaranteed here: ``NET_RAW`` (a Docker default capability) lets a task send crafted frames
on the shared L2, one way; containers of one host also share ``docker0``, which bootstrap's
forwarding guard handles; tasks of other drivers (exec, raw_exec, …) never join the overlay.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from weavenomad.errors import ValidationError
from weavenomad.tenancy import weavecidr

#: Docker network modes whose containers the Weave proxy attaches (docs/design.md)
ATTACHED_NETWORK_MODES = frozenset({"", "default", "bridge", "none"})
#: group network modes that leave each task its own Docker network mode
HOST_GROUP_MODES = frozenset({"", "host"})
#: capabilities that let a process change its own interfaces' addresses or leave its namespace
ESCAPE_CAPABILITIES = frozenset({"NET_ADMIN", "SYS_ADMIN", "ALL"})
#: API sockets that start containers (``/var/run`` is ``/run`` on every current distribution)
API_SOCKETS = ("/run/docker.sock", "/run/weave/weave.sock", "/run/containerd/containerd.sock",
               "/run/docker/containerd/containerd.sock")
#: Docker config keys that grant privileges or host paths (most tasks have none of them)
PRIVILEGE_KEYS = frozenset({"privileged", "cap_add", "pid_mode", "volumes", "mount", "mounts"})
#: interpolations that always point inside the allocation, never at the host's paths
TASK_DIRS = ("${NOMAD_TASK_DIR}", "${NOMAD_ALLOC_DIR}", "${NOMAD_SECRETS_DIR}")

#: the fields of each level that the transform and these checks read
FIELDS = {
    "job": ("ID", "Name", "TaskGroups", "Meta"),
    "group": ("Name", "Tasks", "Networks", "Services"),
    "task": ("Name", "Driver", "Config", "Env", "Templates", "Resources", "Services"),
    "service": ("Name", "Tags", "CanaryTags", "Meta", "CanaryMeta", "Provider", "Checks"),
    "check": ("Name",),
    "network": ("Mode",),
    "resources": ("Networks",),
    "template": ("EmbeddedTmpl", "Envvars", "SourcePath", "LeftDelim"),
}
_FOLDED = {level: {name.casefold(): name for name in names} for level, names in FIELDS.items()}
#: keys seen before and found harmless, per level: one set difference per record after warm-up
_HARMLESS: dict[str, set] = {level: set(names) for level, names in FIELDS.items()}


def fail(where: str, field: str, why: str, hint: str | None = None) -> ValidationError:
    return ValidationError(f"{where}: {field} {why}", hint=hint)


def check_keys(record: dict, level: str, where: str) -> None:
    """Refuse keys that Nomad would read as one of our fields but that are spelled otherwise."""
    harmless = _HARMLESS[level]
    for key in record.keys() - harmless:
        meant = _FOLDED[level].get(key.casefold()) if isinstance(key, str) else None
        if meant is not None:
            raise fail(where, repr(key), f"is read by Nomad as {meant!r} (JSON keys are "
                       "matched without regard to case)", hint=f"spell it {meant}")
        if len(harmless) < 10_000:  # bounded: hostile jobs may carry any number of keys
            harmless.add(key)


def as_object(value: Any, where: str, field: str) -> dict:
    """``value`` when it is a JSON object, {} for null, else a clear refusal."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(where, field, f"must be an object, not {type(value).__name__}")
    return value


def as_list(value: Any, where: str, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(where, field, f"must be a list, not {type(value).__name__}")
    return value


def interpolated(value: Any) -> bool:
    """True when ``value`` (or any string inside it) holds a ``${…}`` Nomad fills at run time."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(interpolated(v) for v in value.values())
    if isinstance(value, list):
        return any(interpolated(v) for v in value)
    return False


# -- WEAVE_CIDR --------------------------------------------------------------------------------


def request_fits(request: weavecidr.AddressRequest, subnet, default_subnet) -> bool:
    """Whether one ``WEAVE_CIDR`` token stays inside ``subnet`` (None: the default subnet)."""
    home = subnet or default_subnet
    if request.is_default:
        return subnet is None
    if home is None:  # the default subnet is not known here: only net:default is provably in
        return False
    if request.is_claim:
        return request.address.network.subnet_of(home)
    return request.subnet.subnet_of(home)


def check_job_cidr(value: Any, target, where: str) -> None:
    """A ``WEAVE_CIDR`` the job sets itself is kept only when all of it is inside the tenant."""
    field = f"env {weavecidr.ENV_NAME}"
    hint = f"remove {weavecidr.ENV_NAME} from the job; weavenomad sets it"
    if not isinstance(value, str):
        raise fail(where, field, f"must be a string, not {type(value).__name__}", hint)
    if "${" in value:
        raise fail(where, field, f"= {value!r} uses interpolation, which Nomad resolves on the "
                   "client after this check", hint)
    try:
        parsed = weavecidr.parse(value)
    except ValidationError as exc:
        raise fail(where, field, f"is invalid: {exc.message}", exc.hint) from None
    if not parsed.attach:
        raise fail(where, field, f"= none keeps the task off tenant {target.label!r}'s subnet",
                   hint)
    for request in parsed.effective_requests():
        if not request_fits(request, target.subnet, target.default_subnet):
            raise fail(where, field, f"= {value!r} would place the task outside tenant "
                       f"{target.label!r} ({target.subnet_text})", hint)


# -- networks ----------------------------------------------------------------------------------


def network_modes(networks: Any, where: str, field: str) -> Iterator[tuple[str, Any]]:
    for index, network in enumerate(as_list(networks, where, field)):
        here = f"{field}[{index}]"
        network = as_object(network, where, here)
        check_keys(network, "network", where)
        yield here, network.get("Mode")


def check_group_networks(group: dict, where: str) -> None:
    for field, mode in network_modes(group.get("Networks"), where, "network"):
        if mode is None or mode in HOST_GROUP_MODES:
            continue
        raise fail(where, f"{field} mode", f"= {mode!r} runs the tasks in a network namespace "
                   "the Weave proxy does not attach", hint="drop the group network block's mode")


def check_network_mode(config: dict, target, where: str) -> bool:
    """Refuse a ``network_mode`` the proxy skips; True when it is Weave's plugin network, which
    the transform removes."""
    if "network_mode" not in config:
        return False
    mode = config["network_mode"]
    field = "config network_mode"
    if not isinstance(mode, str):
        raise fail(where, field, f"must be a string, not {type(mode).__name__}")
    if "${" in mode:
        raise fail(where, field, f"= {mode!r} uses interpolation, which Nomad resolves on the "
                   "client after this check", hint="write the network mode literally")
    if mode == "weave":
        return True
    if mode not in ATTACHED_NETWORK_MODES:
        raise fail(where, field, f"= {mode!r} is not attached by the Weave proxy, so the task "
                   f"would run outside tenant {target.label!r}",
                   hint="remove network_mode or use bridge")
    return False


# -- privileges and host paths -----------------------------------------------------------------


def _enabled(value: Any) -> bool:
    """A boolean as the Docker driver's spec reads it (cty turns "true" into true)."""
    return value is True or value == "true"


def capability(name: str) -> str:
    """Docker's spelling of a capability: upper case, without ``CAP_``."""
    name = name.strip().upper()
    return name[4:] if name.startswith("CAP_") else name


def check_privileges(config: dict, where: str) -> None:
    for key in ("privileged", "cap_add", "pid_mode"):
        if key in config and interpolated(config[key]):
            raise fail(where, f"config {key}", "uses interpolation, which Nomad resolves on "
                       "the client after this check", hint=f"write {key} literally")
    if _enabled(config.get("privileged")):
        raise fail(where, "config privileged", "= true lets the task re-address its Weave "
                   "interface into any tenant's subnet", hint="drop privileged")
    caps = config.get("cap_add")
    for cap in [caps] if isinstance(caps, str) else as_list(caps, where, "config cap_add"):
        if isinstance(cap, str) and capability(cap) in ESCAPE_CAPABILITIES:
            raise fail(where, "config cap_add", f"holds {cap!r}, which lets the task leave its "
                       "tenant's subnet", hint=f"drop {cap} from cap_add")
    if config.get("pid_mode") == "host":
        raise fail(where, "config pid_mode", "= 'host' lets the task reach into other tenants' "
                   "containers", hint="drop pid_mode")


def _exposes_api_socket(path: str) -> bool:
    path = posixpath.normpath(path)
    if path == "/var/run" or path.startswith("/var/run/"):
        path = "/run" + path[len("/var/run"):]
    return any(s == path or s.startswith(path.rstrip("/") + "/") for s in API_SOCKETS)


def host_paths(config: dict, where: str) -> Iterator[tuple[str, str]]:
    """``(field, host path)`` of every bind mount and local-volume device in a Docker config."""
    for index, entry in enumerate(as_list(config.get("volumes"), where, "config volumes")):
        if isinstance(entry, str):
            yield f"volumes[{index}]", entry.split(":", 1)[0]
    for key in ("mount", "mounts"):
        mounts = config.get(key)
        for index, mount in enumerate([mounts] if isinstance(mounts, dict) else
                                      as_list(mounts, where, f"config {key}")):
            if not isinstance(mount, dict):
                continue
            if isinstance(mount.get("source"), str) and mount.get("type") == "bind":
                yield f"{key}[{index}] source", mount["source"]
            yield from _devices(mount.get("volume_options"), f"{key}[{index}] volume_options")


def _devices(value: Any, field: str) -> Iterator[tuple[str, str]]:
    """Local volumes take a host path as the ``device`` driver option (``o = bind``)."""
    if isinstance(value, list):
        for item in value:
            yield from _devices(item, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "device" and isinstance(item, str):
                yield f"{field} device", item
            else:
                yield from _devices(item, field)


def check_host_paths(config: dict, where: str) -> None:
    for field, path in host_paths(config, where):
        if "${" in path and not path.startswith(TASK_DIRS):
            raise fail(where, f"config {field}", f"= {path!r} uses interpolation, which Nomad "
                       "resolves on the client after this check", hint="write the path literally")
        if path.startswith("/") and _exposes_api_socket(path):
            raise fail(where, f"config {field}", f"= {path!r} exposes a container API socket, "
                       "from which the task could start containers in any subnet",
                       hint="do not mount the Docker, containerd or Weave socket")


# -- templates ---------------------------------------------------------------------------------


def check_templates(task: dict, where: str, warnings: list[str]) -> None:
    for index, template in enumerate(as_list(task.get("Templates"), where, "Templates")):
        field = f"template[{index}]"
        template = as_object(template, where, field)
        check_keys(template, "template", where)
        if not _enabled(template.get("Envvars")):
            continue
        text = template.get("EmbeddedTmpl") or ""
        if not isinstance(text, str):
            raise fail(where, f"{field} data", f"must be a string, not {type(text).__name__}")
        if weavecidr.ENV_NAME in text:
            raise fail(where, f"{field} data", f"sets {weavecidr.ENV_NAME} in the task's env, "
                       "replacing the tenant's value", hint=f"remove {weavecidr.ENV_NAME} from "
                       "the template")
        delimiter = template.get("LeftDelim") or "{{"
        if template.get("SourcePath") or delimiter in text:
            warnings.append(f"{where} {field}: env = true with content known only at run time; "
                            f"if it ever sets {weavecidr.ENV_NAME}, the reconciler's tenant audit "
                            "keeps the task unadvertised")


def check_docker_task(task: dict, config: dict, target, where: str,
                      warnings: list[str]) -> bool:
    """Every check of one Docker task but its ``WEAVE_CIDR``; True when ``network_mode =
    "weave"`` must go."""
    resources = as_object(task.get("Resources"), where, "Resources")
    check_keys(resources, "resources", where)
    for field, mode in network_modes(resources.get("Networks"), where, "resources network"):
        if mode is not None and mode not in HOST_GROUP_MODES:
            raise fail(where, f"{field} mode", f"= {mode!r} is not a mode a task network "
                       "may have inside a tenant", hint="drop the mode")
    if not PRIVILEGE_KEYS.isdisjoint(config):
        check_privileges(config, where)
        check_host_paths(config, where)
    check_templates(task, where, warnings)
    return check_network_mode(config, target, where)
