"""One settings object, built once, with the precedence flag > environment > config file > default.

The environment variables are the ecosystem's own (``NOMAD_ADDR``, ``CONSUL_HTTP_TOKEN``,
``DOCKER_HOST``, ``WEAVE_HTTP_ADDR`` …), so a shell already set up for ``nomad``, ``consul``,
``docker`` and ``weave`` works unchanged. Nothing below the CLI reads ``os.environ``: the CLI
passes the environment in, which keeps :func:`build_settings` a pure, testable function.

The config file is TOML, ``--config PATH`` or ``/etc/weavenomad/config.toml`` when present::

    [nomad]
    addr = "https://nomad.service.consul:4646"
    cacert = "/etc/nomad.d/ca.pem"
    [consul]
    addr = "127.0.0.1:8500"
    [weave]
    api = "http://127.0.0.1:6784"
    # the maintained fork rajch/weave, for Docker >= 25 (see docs/design.md)
    version = "2.9.0"
    image_owner = "rajchaudhuri"
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from weavenomad.errors import ConfigError

DEFAULT_CONFIG_FILE = "/etc/weavenomad/config.toml"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class TLSSettings:
    """TLS material for one backend. Verification is on unless explicitly switched off."""

    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    skip_verify: bool = False

    @property
    def verify(self) -> bool | str:
        """The value for requests' ``verify=``: a CA bundle path, or True/False."""
        if self.skip_verify:
            return False
        return self.ca_cert or True

    @property
    def cert(self) -> tuple[str, str] | str | None:
        """The value for requests' ``cert=``."""
        if self.client_cert and self.client_key:
            return (self.client_cert, self.client_key)
        return self.client_cert


@dataclass(frozen=True)
class NomadSettings:
    addr: str = "http://127.0.0.1:4646"
    token: str | None = field(default=None, repr=False)
    region: str | None = None
    namespace: str | None = None
    tls: TLSSettings = TLSSettings()
    #: the agent's config file or directory (None: ask the agent, then the usual places)
    config_path: str | None = None
    #: how to restart the local agent (None: systemd when it manages Nomad)
    restart_command: str | None = None


@dataclass(frozen=True)
class ConsulSettings:
    addr: str = "http://127.0.0.1:8500"
    token: str | None = field(default=None, repr=False)
    datacenter: str | None = None
    tls: TLSSettings = TLSSettings()


@dataclass(frozen=True)
class DockerSettings:
    host: str = "unix:///var/run/docker.sock"
    tls_verify: bool = False
    cert_path: str | None = None


@dataclass(frozen=True)
class WeaveSettings:
    api: str = "http://127.0.0.1:6784"
    #: the ``weave`` command; the lab puts its shim of the same name first on PATH
    command: str = "weave"
    #: which Weave images the command runs, through the weave script's own variables:
    #: ``WEAVE_VERSION`` (their tag; default: the script's version) and ``DOCKERHUB_USER`` (their
    #: owner: weaveworks, or rajchaudhuri for the maintained fork rajch/weave)
    version: str | None = None
    image_owner: str | None = None
    #: ``DOCKER_API_VERSION`` for the weave command: the API version the fork speaks (1.24 by
    #: default; Docker 29 wants 1.44); weaveworks' 2.8 ignores it
    docker_api_version: str | None = None

    def command_environment(self) -> dict[str, str]:
        """The weave command's variables these settings give (empty: the script's defaults)."""
        values = {"WEAVE_VERSION": self.version, "DOCKERHUB_USER": self.image_owner,
                  "DOCKER_API_VERSION": self.docker_api_version}
        return {name: value for name, value in values.items() if value}


@dataclass(frozen=True)
class BootstrapSettings:
    peers: tuple[str, ...] = ()
    ipalloc_range: str = "10.32.0.0/16"
    default_subnet: str = "10.32.0.0/24"
    #: hold the Docker packages (``bootstrap --hold-docker``)
    hold_docker: bool = False
    #: where the node's own records live (the Docker package holds weavenomad made)
    state_dir: str = "/var/lib/weavenomad"


def _tuning(default: Any) -> Any:
    """A field no flag, variable or config key sets: the daemon's own timing, which tests
    shorten. ``config show`` leaves it out."""
    return field(default=default, metadata={"tuning": True})


@dataclass(frozen=True)
class ReconcilerSettings:
    """How the reconciler daemon runs: the operator's settings (the table below), then the
    daemon's timings."""

    #: the Nomad node this reconciler serves (None: the local agent's)
    node_id: str | None = None
    #: seconds between full resyncs
    resync: float = 60.0
    #: host:port for Prometheus metrics (None: off)
    metrics_addr: str | None = None
    log_format: str = "text"
    #: seconds a container may run without a Weave address before that is a problem
    address_grace: float = _tuning(10.0)
    #: the backoff after a failed pass: from retry_base doubling to retry_cap seconds
    retry_base: float = _tuning(0.25)
    retry_cap: float = _tuning(2.0)
    #: quick looks for something that should settle by itself (waiting_base doubling to
    #: retry_cap, ~10 s in all), then events only
    waiting_base: float = _tuning(0.05)
    waiting_rounds: int = _tuning(10)
    #: the blocking query wait of the watchers; well under the 10 min Nomad and Consul allow
    watch_wait: float = _tuning(300.0)
    #: the least time between the end of a pass and an event-driven one (bursts gather)
    pass_gap: float = _tuning(0.05)
    #: seconds between two reads of Weave's IPAM (it has no change feed)
    weave_poll: float = _tuning(2.0)
    #: how long a twin is kept after Nomad deregistered its service while the container runs
    #: on at the same address (a Weave restart broke Nomad's wait on it: day-two/1c): past the
    #: task's announced restart, or, before Nomad's allocation says it restarts, this long
    keep_twin_margin: float = _tuning(10.0)
    keep_twin_unannounced: float = _tuning(5.0)
    #: the reconciler's own first probe of a new twin's checks (reconcile/probe.py): each waits
    #: at most this long (or the check's shorter timeout), all of a pass at most probe_budget
    probe_cap: float = _tuning(0.5)
    probe_budget: float = _tuning(1.0)

    @property
    def mirror_ttl(self) -> int:
        """Seconds a mirror check holds its status: two missed resyncs and more, so only a dead
        reconciler lets mirrors expire."""
        return int(self.resync * 3 + 30)


@dataclass(frozen=True)
class Settings:
    nomad: NomadSettings = NomadSettings()
    consul: ConsulSettings = ConsulSettings()
    docker: DockerSettings = DockerSettings()
    weave: WeaveSettings = WeaveSettings()
    bootstrap: BootstrapSettings = BootstrapSettings()
    reconciler: ReconcilerSettings = ReconcilerSettings()
    #: Consul KV prefix of the tenant registry
    kv_prefix: str = "weavenomad/"
    #: seconds for one HTTP call to any backend (blocking queries wait less than this)
    http_timeout: float = 10.0
    json_output: bool = False
    debug: bool = False
    #: the config file that was read, if any
    config_file: str | None = None
    #: the values given by flag, environment or file, by ``section.name``, and where from
    given: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def secrets(self) -> list[str]:
        """Values that must never be printed (see :func:`weavenomad.errors.redact`)."""
        return [s for s in (self.nomad.token, self.consul.token) if s]


# --------------------------------------------------------------------------------------------
# The field table: one row per setting. Adding a setting is adding a row.


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _not(text: str) -> bool:
    return not _bool(text)


def _positive_float(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number


def _consul_addr(text: str) -> str:
    # CONSUL_HTTP_ADDR is usually "host:port" without a scheme; the consul CLI then uses
    # http unless CONSUL_HTTP_SSL is set, which _finish() applies.
    return text.strip()


def _words(value: Any) -> tuple[str, ...]:
    """A list from the config file, or a comma/space separated string from the environment."""
    if isinstance(value, str):
        return tuple(word for word in value.replace(",", " ").split() if word)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _log_format(value: Any) -> str:
    if value not in ("text", "json"):
        raise ValueError(f"expected text or json, got {value!r}")
    return value


def _token(value: Any, what: str) -> str | None:
    """A token as sent in an HTTP header: surrounding whitespace (a file's newline) dropped;
    inner whitespace or control characters refused, with a message that never shows it
    (requests would otherwise fail with the whole header value in its error)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string")
    text = value.strip()
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError(f"{what} contains whitespace or control characters",
                          hint="check how the token was copied")
    return text or None


def _api_version(value: Any) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"1\.\d{1,2}", text):
        raise ValueError(f"expected a Docker API version such as 1.24 or 1.44, got {value!r}")
    return text


def _release(value: Any) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"\d+\.\d+\.\d+|latest", text):
        raise ValueError(f"expected a Weave release such as 2.9.0, got {value!r}")
    return text


def _image_owner(value: Any) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/-]*", text):
        raise ValueError(f"expected a Docker Hub user (weaveworks, rajchaudhuri), got {value!r}")
    return text


def _kv_prefix(text: str) -> str:
    text = text.strip().strip("/")
    if not text:
        raise ValueError("the KV prefix must not be empty")
    return text + "/"


@dataclass(frozen=True)
class _Field:
    path: str  # "section.name" in the config file and in the result
    flag: str | None = None  # the click parameter name that sets it
    env: tuple[str, ...] = ()
    parse_env: Callable[[str], Any] = str
    parse_file: Callable[[Any], Any] = str
    #: where the value in effect lives in :class:`Settings` (None: only in ``Settings.given``)
    attr: str | None = None
    secret: bool = False


FIELDS: tuple[_Field, ...] = (
    _Field("nomad.addr", "nomad_addr", ("NOMAD_ADDR",), attr="nomad.addr"),
    _Field("nomad.token", "nomad_token", ("NOMAD_TOKEN",), attr="nomad.token", secret=True),
    _Field("nomad.region", None, ("NOMAD_REGION",), attr="nomad.region"),
    _Field("nomad.namespace", None, ("NOMAD_NAMESPACE",), attr="nomad.namespace"),
    _Field("nomad.cacert", None, ("NOMAD_CACERT",), attr="nomad.tls.ca_cert"),
    _Field("nomad.client_cert", None, ("NOMAD_CLIENT_CERT",), attr="nomad.tls.client_cert"),
    _Field("nomad.client_key", None, ("NOMAD_CLIENT_KEY",), attr="nomad.tls.client_key"),
    _Field("nomad.skip_verify", None, ("NOMAD_SKIP_VERIFY",), _bool, bool,
           attr="nomad.tls.skip_verify"),
    _Field("nomad.config", "nomad_config", ("WEAVENOMAD_NOMAD_CONFIG",),
           attr="nomad.config_path"),
    _Field("nomad.restart_command", None, ("WEAVENOMAD_NOMAD_RESTART_COMMAND",),
           attr="nomad.restart_command"),
    _Field("consul.addr", "consul_addr", ("CONSUL_HTTP_ADDR",), _consul_addr,
           attr="consul.addr"),
    _Field("consul.token", "consul_token", ("CONSUL_HTTP_TOKEN",), attr="consul.token",
           secret=True),
    _Field("consul.datacenter", None, (), attr="consul.datacenter"),
    _Field("consul.ssl", None, ("CONSUL_HTTP_SSL",), _bool, bool),
    _Field("consul.cacert", None, ("CONSUL_CACERT",), attr="consul.tls.ca_cert"),
    _Field("consul.client_cert", None, ("CONSUL_CLIENT_CERT",), attr="consul.tls.client_cert"),
    _Field("consul.client_key", None, ("CONSUL_CLIENT_KEY",), attr="consul.tls.client_key"),
    # CONSUL_HTTP_SSL_VERIFY=false switches verification off, hence the negation
    _Field("consul.skip_verify", None, ("CONSUL_HTTP_SSL_VERIFY",), _not, bool,
           attr="consul.tls.skip_verify"),
    _Field("docker.host", "docker_host", ("DOCKER_HOST",), attr="docker.host"),
    _Field("docker.tls_verify", None, ("DOCKER_TLS_VERIFY",), _bool, bool,
           attr="docker.tls_verify"),
    _Field("docker.cert_path", None, ("DOCKER_CERT_PATH",), attr="docker.cert_path"),
    _Field("weave.api", "weave_api", ("WEAVE_HTTP_ADDR",), attr="weave.api"),
    _Field("weave.command", None, ("WEAVENOMAD_WEAVE_COMMAND",), attr="weave.command"),
    # the weave script's own variables (WEAVE_VERSION, DOCKERHUB_USER) and the fork's
    _Field("weave.version", None, ("WEAVE_VERSION",), _release, _release, attr="weave.version"),
    _Field("weave.image_owner", None, ("DOCKERHUB_USER",), _image_owner, _image_owner,
           attr="weave.image_owner"),
    _Field("weave.docker_api_version", None, ("DOCKER_API_VERSION",), _api_version,
           _api_version, attr="weave.docker_api_version"),
    _Field("registry.kv_prefix", "kv_prefix", ("WEAVENOMAD_KV_PREFIX",), _kv_prefix, _kv_prefix,
           attr="kv_prefix"),
    _Field("http.timeout", "http_timeout", (), _positive_float, _positive_float,
           attr="http_timeout"),
    _Field("bootstrap.peers", "peers", ("WEAVENOMAD_PEERS",), _words, _words,
           attr="bootstrap.peers"),
    _Field("bootstrap.ipalloc_range", "ipalloc_range", (), attr="bootstrap.ipalloc_range"),
    _Field("bootstrap.default_subnet", "default_subnet", (), attr="bootstrap.default_subnet"),
    _Field("bootstrap.hold_docker", "hold_docker", (), _bool, bool,
           attr="bootstrap.hold_docker"),
    _Field("bootstrap.state_dir", None, ("WEAVENOMAD_STATE_DIR",), attr="bootstrap.state_dir"),
    _Field("reconciler.node_id", "node_id", (), attr="reconciler.node_id"),
    _Field("reconciler.resync", "resync", (), _positive_float, _positive_float,
           attr="reconciler.resync"),
    _Field("reconciler.metrics_addr", "metrics_addr", (), attr="reconciler.metrics_addr"),
    _Field("reconciler.log_format", "log_format", ("WEAVENOMAD_LOG_FORMAT",), _log_format,
           _log_format, attr="reconciler.log_format"),
)

_FIELDS_BY_PATH = {f.path: f for f in FIELDS}


def _with_scheme(addr: str, secure: bool = False) -> str:
    if "://" in addr:
        return addr
    return ("https://" if secure else "http://") + addr


def _resolve(
    flags: Mapping[str, Any], environ: Mapping[str, str], file_values: Mapping[str, Any],
    config_file: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values given, and where each came from (``flag --x``, ``env X``, ``file PATH``)."""
    resolved: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in FIELDS:
        if spec.flag and flags.get(spec.flag) is not None:
            resolved[spec.path] = flags[spec.flag]
            sources[spec.path] = f"flag --{spec.flag.replace('_', '-')}"
            continue
        env_name = next((name for name in spec.env if environ.get(name)), None)
        if env_name is not None:
            try:
                resolved[spec.path] = spec.parse_env(environ[env_name])
            except ValueError as exc:
                raise ConfigError(f"environment variable {env_name}: {exc}") from None
            sources[spec.path] = f"env {env_name}"
            continue
        if spec.path in file_values:
            resolved[spec.path] = file_values[spec.path]
            sources[spec.path] = f"file {config_file or 'config'}"
    return resolved, sources


def build_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    file_values: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
) -> Settings:
    """Resolve every setting: flag > environment > config file > default. Pure."""
    values, sources = _resolve(flags, environ, file_values or {}, config_file)
    get = values.get
    nomad = NomadSettings(
        addr=_with_scheme(get("nomad.addr", NomadSettings.addr)),
        token=_token(get("nomad.token"), "the Nomad token (NOMAD_TOKEN, --nomad-token, [nomad] "
                                          "token)"),
        region=get("nomad.region"),
        namespace=get("nomad.namespace"),
        tls=TLSSettings(
            get("nomad.cacert"),
            get("nomad.client_cert"),
            get("nomad.client_key"),
            bool(get("nomad.skip_verify", False)),
        ),
        config_path=get("nomad.config"),
        restart_command=get("nomad.restart_command"),
    )
    consul = ConsulSettings(
        addr=_with_scheme(get("consul.addr", ConsulSettings.addr), bool(get("consul.ssl", False))),
        token=_token(get("consul.token"), "the Consul token (CONSUL_HTTP_TOKEN, "
                                            "--consul-token, [consul] token)"),
        datacenter=get("consul.datacenter"),
        tls=TLSSettings(
            get("consul.cacert"),
            get("consul.client_cert"),
            get("consul.client_key"),
            bool(get("consul.skip_verify", False)),
        ),
    )
    docker = DockerSettings(
        host=get("docker.host", DockerSettings.host),
        tls_verify=bool(get("docker.tls_verify", False)),
        cert_path=get("docker.cert_path"),
    )
    weave = WeaveSettings(
        api=_with_scheme(get("weave.api", WeaveSettings.api)),
        command=get("weave.command", WeaveSettings.command),
        version=get("weave.version"),
        image_owner=get("weave.image_owner"),
        docker_api_version=get("weave.docker_api_version"),
    )
    bootstrap = BootstrapSettings(
        peers=tuple(get("bootstrap.peers", ())),
        ipalloc_range=get("bootstrap.ipalloc_range", BootstrapSettings.ipalloc_range),
        default_subnet=get("bootstrap.default_subnet", BootstrapSettings.default_subnet),
        hold_docker=bool(get("bootstrap.hold_docker", False)),
        state_dir=get("bootstrap.state_dir", BootstrapSettings.state_dir),
    )
    reconciler = ReconcilerSettings(
        node_id=get("reconciler.node_id"),
        resync=get("reconciler.resync", ReconcilerSettings.resync),
        metrics_addr=get("reconciler.metrics_addr"),
        log_format=get("reconciler.log_format", ReconcilerSettings.log_format),
    )
    return Settings(
        nomad=nomad,
        consul=consul,
        docker=docker,
        weave=weave,
        bootstrap=bootstrap,
        reconciler=reconciler,
        kv_prefix=get("registry.kv_prefix", Settings.kv_prefix),
        http_timeout=get("http.timeout", Settings.http_timeout),
        json_output=bool(flags.get("json_output") or False),
        debug=bool(flags.get("debug") or False),
        config_file=config_file,
        given=MappingProxyType(values),
        sources=MappingProxyType(sources),
    )


# --------------------------------------------------------------------------------------------
# The config file


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """Parse TOML config text into ``{"section.name": value}``; unknown keys are errors."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for section, table in document.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: '{section}' must be a [section], not a value")
        for name, value in table.items():
            path = f"{section}.{name}"
            spec = _FIELDS_BY_PATH.get(path)
            if spec is None:
                raise ConfigError(f"{source}: unknown setting '{path}'")
            try:
                flat[path] = spec.parse_file(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: setting '{path}': {exc}") from None
    return flat


def load_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str], config_path: str | None = None
) -> Settings:
    """Build the settings, reading the config file (an explicit path must exist)."""
    explicit = config_path or environ.get("WEAVENOMAD_CONFIG")
    path = explicit or DEFAULT_CONFIG_FILE
    file_values: dict[str, Any] = {}
    used: str | None = None
    if explicit or os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {path}: {exc.strerror}", hint="--config PATH"
            ) from None
        file_values = parse_config_text(text, path)
        used = path
    return build_settings(flags, environ, file_values, config_file=used)


def setting_names() -> list[str]:
    """Every ``section.name`` the config file accepts (for docs and ``--help``)."""
    return [spec.path for spec in FIELDS]


def _effective(settings: Settings, spec: _Field) -> Any:
    if spec.attr is None:
        return settings.given.get(spec.path, False if spec.parse_env in (_bool, _not) else None)
    value: Any = settings
    for name in spec.attr.split("."):
        value = getattr(value, name)
    return list(value) if isinstance(value, tuple) else value


def describe(settings: Settings) -> dict[str, Any]:
    """``config show``: every key the config file takes with the value in effect (tokens as
    ``<set>``) and where it came from: a flag, the environment, the file, or the default."""
    values: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for spec in FIELDS:
        section, name = spec.path.split(".", 1)
        value = _effective(settings, spec)
        if spec.secret:
            value = "<set>" if value else None
        values.setdefault(section, {})[name] = value
        sources[spec.path] = settings.sources.get(spec.path) or (
            "default" if value is not None else "not set")
    return {"config_file": settings.config_file, "settings": values, "sources": sources}


def _toml_value(value: Any) -> str:
    if value == "<set>":
        return value  # a masked secret: no TOML, on purpose
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


def describe_text(described: Mapping[str, Any]) -> str:
    """:func:`describe` as TOML-like text: what a config file with these values would say,
    each key with its source in a comment; keys without a value are commented out."""
    rows: list[tuple[str, str]] = []
    for section, keys in described["settings"].items():
        rows.append((f"[{section}]", ""))
        for name, value in keys.items():
            source = described["sources"][f"{section}.{name}"]
            if value is None:
                spec = _FIELDS_BY_PATH[f"{section}.{name}"]
                where = ", ".join(f"env {e}" for e in spec.env) or "config file only"
                rows.append((f"# {name} =", f"not set ({where})"))
            else:
                rows.append((f"{name} = {_toml_value(value)}", source))
        rows.append(("", ""))
    width = max(len(key) for key, _ in rows)
    file = described.get("config_file")
    lines = ["# settings in effect (flag > env > config file > default); tokens are masked",
             f"# config file: {file or 'none read'}", ""]
    for key, note in rows[:-1]:
        lines.append(f"{key:<{width}}  # {note}" if note else key)
    return "\n".join(lines)
