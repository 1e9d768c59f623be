"""The Weave adapters: the router's HTTP API (``WeaveAPI``) and the ``weave`` command
(``WeaveCommand``).

HTTP API facts (weave 2.8.1 ``ipam/http.go``, ``router/http.go``; recorded in
``fixtures/recorded/weave-*.json``): ``POST /ip/<id>/<net>/<len>`` allocates in one subnet and
answers space-separated CIDRs; ``GET /ip`` lists every owned address as JSON, ``GET /report``
answers JSON only with ``Accept: application/json``, ``POST /expose/<ip>/<len>`` answers 204.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_interface, ip_network

import requests

from weavenomad.clients.errors import (
    Backend,
    error_for_exception,
    error_for_status,
    summarize,
)
from weavenomad.clients.weave_ipam import IpamWait, ipam_wait
from weavenomad.errors import BackendError, BackendUnavailable

DEFAULT_COMMAND_TIMEOUT = 60.0
#: the real ``weave launch`` may pull the weave images first
DEFAULT_LAUNCH_TIMEOUT = 300.0
_ADDRESS = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?$")
#: the IPAM ident of the host's own addresses on the weave bridge
EXPOSE_IDENT = "weave:expose"
_VERSION_LINE = re.compile(r"^(weave(?: [a-z]+)*)\s+(\S.*)$")


class PeersAwaited(BackendError):
    """Weave's IPAM cannot allocate on this node yet: it waits for peers (``waiting`` says
    which). Nothing is wrong with the request: it can be made once the peers are up."""

    temporary = True

    def __init__(self, waiting: IpamWait, *, backend: str):
        super().__init__(f"this node waits for peers: {waiting.describe()}", backend=backend,
                         hint="bootstrap the peers named at launch")
        self.waiting = waiting


def weave_backend(settings) -> Backend:
    return Backend(
        key="weave",
        title="Weave",
        addr=settings.weave.api,
        addr_hint="set --weave-api or WEAVE_HTTP_ADDR, and check that `weave launch` ran",
    )


def parse_cidrs(text: str) -> list[IPv4Interface]:
    """Addresses as the HTTP API writes them: ``10.32.1.1/24 10.32.2.1/24`` or nothing. Pure."""
    return [IPv4Interface(token) for token in text.split()]


def parse_host_addresses(text: str) -> list[IPv4Address]:
    """The host addresses ``weave expose``/``hide`` print, one per subnet, with or without a
    prefix length. Pure."""
    return [ip_interface(t).ip for t in text.split() if _ADDRESS.match(t)]  # type: ignore[misc]


def parse_version(text: str) -> dict[str, str]:
    """``weave version`` lines (``weave script 2.8.1``, ``weave 2.8.1``) as a dict. Pure."""
    found = {}
    for line in text.splitlines():
        match = _VERSION_LINE.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def parse_owned(body: object) -> dict[str, list[IPv4Interface]]:
    """``GET /ip``'s ``{"owned": [{"containerid": ID, "addrs": [CIDR, ...]}, ...]}`` by ID.
    Pure; ValueError naming the first field that is not as Weave 2.8 writes it."""
    if not isinstance(body, dict):
        raise ValueError(f"expected an object, got {type(body).__name__}")
    entries = body.get("owned") or []
    if not isinstance(entries, list):
        raise ValueError(f"owned is {type(entries).__name__}, not a list")
    found: dict[str, list[IPv4Interface]] = {}
    for index, entry in enumerate(entries):
        ident = entry.get("containerid") if isinstance(entry, dict) else None
        if not isinstance(ident, str) or not ident:
            raise ValueError(f"owned[{index}] has no containerid")
        addrs = entry.get("addrs") or []
        if not isinstance(addrs, list):
            raise ValueError(f"owned[{index}].addrs is {type(addrs).__name__}, not a list")
        parsed = []
        for number, text in enumerate(addrs):
            try:
                if not isinstance(text, str) or "/" not in text:
                    raise ValueError
                parsed.append(IPv4Interface(text))
            except ValueError:
                raise ValueError(f"owned[{index}].addrs[{number}] = {text!r} is no IPv4 "
                                 "address with a prefix length") from None
        found[ident] = parsed
    return found


def cidr_spec(spec: str | IPv4Network | IPv4Interface) -> str:
    """A ``weave expose``/``hide`` argument: ``net:default``, ``net:<cidr>``, ``ip:<cidr>``."""
    if isinstance(spec, IPv4Network):
        return f"net:{spec}"
    if isinstance(spec, IPv4Interface):
        return f"ip:{spec}"
    return spec


class WeaveAPI:
    """The Weave router's HTTP API. ``session`` is injectable."""

    def __init__(
        self,
        addr: str,
        *,
        timeout: float = 10.0,
        backend: Backend | None = None,
        session: requests.Session | None = None,
    ):
        self.addr = addr.rstrip("/")
        self.timeout = timeout
        self.backend = backend or Backend("weave", "Weave", self.addr,
                                          "set --weave-api or WEAVE_HTTP_ADDR")
        self.session = session or requests.Session()

    @classmethod
    def from_settings(cls, settings, session: requests.Session | None = None) -> WeaveAPI:
        return cls(settings.weave.api, timeout=settings.http_timeout,
                   backend=weave_backend(settings), session=session)

    def _request(self, method: str, path: str, accept: str | None = None) -> requests.Response:
        headers = {"Accept": accept} if accept else {}
        try:
            response = self.session.request(method, self.addr + path, headers=headers,
                                            timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise error_for_exception(self.backend, exc, method, path) from None
        if response.status_code >= 400:
            raise error_for_status(self.backend, response.status_code, method, path,
                                   response.text)
        return response

    def _text(self, path: str) -> str:
        return self._request("GET", path).text

    def owned(self) -> dict[str, list[IPv4Interface]]:
        """Every address this peer's IPAM owns, by container ID (``weave:expose`` for the
        host). An answer of another shape is a :class:`BackendError` naming the first bad
        field, never half read."""
        body = self._json("/ip")
        try:
            return parse_owned(body)
        except ValueError as exc:
            raise BackendError(f"Weave answered GET /ip with an unreadable IPAM list: {exc}",
                               backend="weave", hint=f"check that {self.addr} is Weave's "
                               "HTTP API (weave 2.8)") from None

    def report(self) -> dict:
        return self._json("/report", accept="application/json")

    def default_subnet(self) -> IPv4Network:
        return IPv4Network(self._text("/ipinfo/defaultsubnet").strip())

    def proxy_addrs(self) -> list[str]:
        """Where the Docker API proxy listens, each address once (Weave lists some twice)."""
        addrs = [line.strip() for line in self._text("/proxyaddrs").splitlines() if line.strip()]
        return list(dict.fromkeys(addrs))

    def expose(self, address: IPv4Interface | str) -> None:
        """Give the host ``address`` on the weave bridge (the allocation is the caller's)."""
        iface = IPv4Interface(address)
        self._request("POST", f"/expose/{iface.ip}/{iface.network.prefixlen}")

    def allocate(self, ident: str, subnet: IPv4Network | str) -> IPv4Interface:
        """An address for ``ident`` in ``subnet`` from Weave's IPAM: the one it already owns
        there, else the lowest free one (Weave's allocator is idempotent per ident and subnet)."""
        network = ip_network(subnet)
        path = f"/ip/{ident}/{network.network_address}/{network.prefixlen}"
        found = parse_cidrs(self._request("POST", path).text)
        if not found:
            raise BackendError(f"Weave allocated no address in {network} for {ident}",
                               backend=self.backend.key)
        return found[0]

    def ipam_waits(self) -> IpamWait | None:
        """Why Weave's IPAM cannot allocate on this node now (it waits for peers); None when
        it can."""
        return ipam_wait(self.report())

    def refuse_while_waiting(self) -> None:
        """Raise :class:`PeersAwaited` at once while Weave's IPAM waits for peers: Weave would
        hold an allocation request until enough of them are up (multi-node/1)."""
        waiting = self.ipam_waits()
        if waiting is not None:
            raise PeersAwaited(waiting, backend=self.backend.key)

    def expose_subnet(self, subnet: IPv4Network | str) -> IPv4Interface:
        """What ``weave expose net:<subnet>`` does through the API: an address for the host
        (ident ``weave:expose``) in ``subnet``, then that address on the weave bridge."""
        address = self.allocate(EXPOSE_IDENT, subnet)
        self.expose(address)
        return address

    def _json(self, path: str, accept: str | None = None):
        response = self._request("GET", path, accept=accept)
        try:
            return response.json()
        except ValueError:
            raise BackendError(
                f"Weave answered GET {path} with something that is not JSON",
                backend="weave", status=response.status_code, body=response.text[:1000],
                hint=f"check that {self.addr} is Weave's HTTP API",
            ) from None


#: our ACL tokens: the weave script needs neither, so it does not get them (least privilege:
#: a child's environment is one more place a token could be read from, e.g. by a crash dump)
SECRET_VARIABLES = ("NOMAD_TOKEN", "CONSUL_HTTP_TOKEN")


def without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` minus our tokens. Pure."""
    return {k: v for k, v in environ.items() if k not in SECRET_VARIABLES}


class WeaveCommand:
    """The ``weave`` command, run with a timeout; a failure is one line with its stderr.

    ``env`` replaces the environment of the command when given (e.g. to set
    ``DOCKER_API_VERSION`` for rajch/weave); by default it inherits ours. Either way the ACL
    tokens are left out, and nothing secret is ever an argument: argv is public (``ps``).
    """

    def __init__(
        self,
        command: str = "weave",
        *,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ):
        self.command = command
        self.timeout = timeout
        self.launch_timeout = launch_timeout
        self.env = dict(env) if env is not None else None

    @classmethod
    def from_settings(cls, settings, env: Mapping[str, str] | None = None) -> WeaveCommand:
        return cls(settings.weave.command, env=env)

    def with_env(self, extra: Mapping[str, str]) -> WeaveCommand:
        """The same command with ``extra`` variables added to its environment (a Weave release's
        ``WEAVE_VERSION``, ``DOCKERHUB_USER``, ``DOCKER_API_VERSION``)."""
        base = os.environ if self.env is None else self.env
        return WeaveCommand(self.command, timeout=self.timeout,
                            launch_timeout=self.launch_timeout, env={**base, **extra})

    def run(self, *args: str, timeout: float | None = None) -> str:
        """Run ``weave ARGS``; its stdout, or :class:`BackendError` naming its stderr."""
        argv = [self.command, *args]
        what = f"weave {args[0]}" if args else "weave"
        limit = self.timeout if timeout is None else timeout
        try:
            env = without_secrets(os.environ if self.env is None else self.env)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env,
                                    start_new_session=True)
        except FileNotFoundError:
            error = BackendUnavailable(
                f"the weave command {self.command!r} was not found", backend="weave",
                hint="install Weave Net 2.8 or set [weave] command in the config file",
            )
            error.temporary = False
            raise error from None
        except PermissionError:
            error = BackendUnavailable(f"the weave command {self.command!r} is not executable",
                                       backend="weave")
            error.temporary = False
            raise error from None
        with proc:
            try:
                stdout, stderr = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                # the weave script runs docker and ip children that would keep the pipes
                # open, so the whole process group goes
                _kill_group(proc)
                proc.communicate()
                raise BackendUnavailable(f"{what} did not finish within {limit:g}s",
                                         backend="weave") from None
            except BaseException:
                _kill_group(proc)
                raise
        if proc.returncode != 0:
            detail = summarize(stderr or stdout or "") or "no output"
            raise BackendError(f"{what} failed (exit {proc.returncode}): {detail}",
                               backend="weave", body=stderr or "")
        return stdout

    def launch(
        self,
        ipalloc_range: str | IPv4Network,
        default_subnet: str | IPv4Network,
        peers: Sequence[str] = (),
    ) -> str:
        """Start the Weave peer (router and Docker API proxy) without WeaveDNS and without
        default allocation: a container gets a Weave address only when it asks (WEAVE_CIDR)."""
        args = ["launch", "--no-dns", "--no-default-ipalloc",
                "--ipalloc-range", str(ipalloc_range),
                "--ipalloc-default-subnet", str(default_subnet), *peers]
        return self.run(*args, timeout=self.launch_timeout)

    def expose(self, specs: Iterable[str | IPv4Network | IPv4Interface]) -> list[IPv4Address]:
        """Expose subnets on the host (``net:default``, networks, ``ip:<cidr>``); the host's
        address in each, in order."""
        return parse_host_addresses(self.run("expose", *map(cidr_spec, specs)))

    def hide(self, specs: Iterable[str | IPv4Network | IPv4Interface]) -> list[IPv4Address]:
        return parse_host_addresses(self.run("hide", *map(cidr_spec, specs)))

    def version(self) -> dict[str, str]:
        return parse_version(self.run("version"))

    def reset(self, force: bool = False) -> None:
        """``weave reset``; ``force`` for a Weave that does not run, which plain reset refuses
        to touch (it cannot tell the peers)."""
        self.run("reset", *(["--force"] if force else []))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
