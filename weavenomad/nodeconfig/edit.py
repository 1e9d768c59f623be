"""Point a Nomad agent's Docker driver at another endpoint by editing its config text. Pure.

Where the endpoint lives (docs/design.md, Nomad ``helper/pluginutils/loader/init.go``): a
``plugin "docker" { config { endpoint = … } }`` block replaces the options-derived driver
config entirely; only without one does the legacy ``client { options { "docker.endpoint" = … } }``
count. Files of a config directory are read in name order, a later plugin block with a
non-empty ``config`` replacing an earlier one (Nomad's ``PluginConfig.Merge``).

Which file and form we edit (one file per change, never a new file):

1. a ``plugin "docker"`` block exists: set ``endpoint`` in the block whose config wins (adding
   ``config { }`` inside it when it has none);
2. else ``client { options { … } }`` holds ``docker.*`` keys: set ``"docker.endpoint"`` there.
   Adding a plugin block instead would silently drop those options, as they are not merged;
3. else append ``plugin "docker" { config { endpoint = … } }`` to the file holding the
   ``client`` block (else the last file), the form Nomad documents since 0.9.

HCL files are edited as text (:mod:`weavenomad.nodeconfig.hclscan`), so comments and formatting
stay; JSON files through :mod:`json`. Every edit is checked before anyone writes it: the new
text parses, the effective endpoint is the wanted one and every other setting is unchanged;
anything else is a :class:`~weavenomad.errors.ValidationError`, never a damaged file.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from weavenomad.errors import ValidationError
from weavenomad.nodeconfig import hclscan, reading

#: the Docker driver's endpoint when nothing sets one
DEFAULT_DOCKER_ENDPOINT = "unix:///var/run/docker.sock"
#: where the Weave Docker API proxy listens on a real node
WEAVE_PROXY_ENDPOINT = "unix:///var/run/weave/weave.sock"

PLUGIN_PATH = ("plugin", "docker")
CONFIG_PATH = ("plugin", "docker", "config")
OPTIONS_PATH = ("client", "options")
OPTION_KEY = "docker.endpoint"
_PYHCL_POSITION = re.compile(r"^Line (\d+), column \d+(?:, index \d+)?: (.*)$", re.S)


@dataclass(frozen=True)
class ConfigFile:
    path: str
    text: str

    @property
    def is_json(self) -> bool:
        return self.path.endswith(".json")


@dataclass(frozen=True)
class DockerSetting:
    """The Docker endpoint the agent gets from a set of files, and where it comes from."""

    #: "plugin", "options" or "default" (nothing sets it)
    form: str
    endpoint: str
    #: the file holding the winning plugin block or option (None for "default")
    file: str | None


@dataclass(frozen=True)
class FileChange:
    path: str
    old: str
    new: str
    #: "plugin" (endpoint set in a plugin block), "options" (legacy client option),
    #: "append" (a plugin block added at the end)
    form: str

    def diff(self) -> str:
        lines = difflib.unified_diff(
            self.old.splitlines(keepends=True), self.new.splitlines(keepends=True),
            fromfile=f"{self.path} (now)", tofile=f"{self.path} (bootstrapped)",
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# -- reading -----------------------------------------------------------------------------------


def parse_config(file: ConfigFile) -> dict[str, Any]:
    """The file as plain data, or ValidationError naming ``file:line``."""
    hint = "fix the Nomad agent config, then run bootstrap again"
    try:
        if file.is_json:
            data = reading.load_json(file.text)
        else:
            data = reading.load_hcl(file.text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"invalid Nomad agent config {file.path}:{exc.lineno}: "
                              f"{exc.msg}", hint=hint) from None
    except reading.Unreadable as exc:
        raise ValidationError(f"invalid Nomad agent config {file.path}: {exc}",
                              hint=hint) from None
    except Exception as exc:  # noqa: BLE001 - pyhcl raises ValueError and lexer errors
        match = _PYHCL_POSITION.match(str(exc))
        if match:
            where, detail = f"{file.path}:{match.group(1)}", match.group(2)
        else:  # "Unexpected end of file; …": the problem is at the last line
            last = file.text.count("\n") + (0 if file.text.endswith("\n") else 1)
            where, detail = f"{file.path}:{max(last, 1)}", str(exc)
        raise ValidationError(f"invalid Nomad agent config {where}: "
                              f"{' '.join(detail.split())}", hint=hint) from None
    if not isinstance(data, dict):
        raise ValidationError(f"invalid Nomad agent config {file.path}: not an object",
                              hint=hint)
    if reading.nesting(data) > reading.MAX_NESTING:
        raise ValidationError(f"invalid Nomad agent config {file.path}: nested deeper than "
                              f"{reading.MAX_NESTING} levels", hint=hint)
    return data


def _objects(value: Any) -> list[dict]:
    """pyhcl and JSON give one block as a dict and repeated blocks as a list of dicts."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _docker_plugins(data: dict) -> list[dict]:
    """The ``config`` of every ``plugin "docker"`` block of one file ({} when it has none)."""
    found = []
    for plugins in _objects(data.get("plugin")):
        for docker in _objects(plugins.get("docker")):
            config: dict = {}
            for part in _objects(docker.get("config")):
                config.update(part)
            found.append(config)
    return found


def _client_options(data: dict) -> dict:
    options: dict = {}
    for client in _objects(data.get("client")):
        for block in _objects(client.get("options")):
            options.update(block)
    return options


def effective_docker(documents: Sequence[tuple[str, dict]]) -> DockerSetting:
    """The Docker endpoint Nomad derives from ``(path, data)`` files read in this order."""
    plugin_seen, plugin_config, plugin_file = False, {}, None
    option_file = None
    options: dict = {}
    for path, data in documents:
        for config in _docker_plugins(data):
            if config or not plugin_seen:
                plugin_config, plugin_file = config, path
            plugin_seen = True
        file_options = _client_options(data)
        if OPTION_KEY in file_options:
            option_file = path
        options.update(file_options)
    if plugin_seen:
        endpoint = plugin_config.get("endpoint") or DEFAULT_DOCKER_ENDPOINT
        return DockerSetting("plugin", str(endpoint), plugin_file)
    if OPTION_KEY in options:
        return DockerSetting("options", str(options[OPTION_KEY]), option_file)
    return DockerSetting("default", DEFAULT_DOCKER_ENDPOINT, None)


def docker_setting(files: Sequence[ConfigFile]) -> DockerSetting:
    return effective_docker([(f.path, parse_config(f)) for f in files])


# -- deciding ----------------------------------------------------------------------------------


def plan_endpoint(
    files: Sequence[ConfigFile], endpoint: str, accepted: Iterable[str] = ()
) -> FileChange | None:
    """The one-file change that makes the agent use ``endpoint``; None when the files already
    give ``endpoint`` or one of ``accepted`` (other spellings of the same socket)."""
    if not files:
        raise ValidationError("no Nomad agent config files to edit",
                              hint="pass --nomad-config FILE_OR_DIR")
    documents = [(f.path, parse_config(f)) for f in files]
    current = effective_docker(documents)
    if current.endpoint == endpoint or current.endpoint in set(accepted):
        return None
    by_path = {f.path: f for f in files}
    if current.form in ("plugin", "options"):
        target, form = by_path[current.file], current.form  # type: ignore[index]
    else:
        with_options = [p for p, d in documents
                        if any(k.startswith("docker.") for k in _client_options(d))]
        with_client = [p for p, d in documents if _objects(d.get("client"))]
        if with_options:
            target, form = by_path[with_options[-1]], "options"
        else:
            target = by_path[(with_client or [files[-1].path])[-1]]
            form = "append"
    new_text = (_edit_json if target.is_json else _edit_hcl)(target, form, endpoint)
    change = FileChange(target.path, target.text, new_text, form)
    check_change(files, change, endpoint)
    return change


def check_change(files: Sequence[ConfigFile], change: FileChange, endpoint: str) -> None:
    """Refuse a change unless the edited file parses, the agent would get ``endpoint`` and the
    file's other settings are exactly as before."""
    edited = ConfigFile(change.path, change.new)
    try:
        new_data = parse_config(edited)
    except ValidationError as exc:
        raise _cannot_edit(change.path, f"the edit would not parse ({exc.message})") from None
    old_data = parse_config(ConfigFile(change.path, change.old))
    documents = [(f.path, new_data if f.path == change.path else parse_config(f))
                 for f in files]
    result = effective_docker(documents)
    if result.endpoint != endpoint:
        raise _cannot_edit(change.path, f"the edit would give endpoint {result.endpoint}")
    if _without_endpoint(new_data) != _without_endpoint(old_data):
        raise _cannot_edit(change.path, "the edit would change other settings")


def _cannot_edit(path: str, why: str) -> ValidationError:
    return ValidationError(f"cannot edit {path} safely: {why}",
                           hint="set the Docker endpoint in that file by hand")


def _without_endpoint(data: Any, path: tuple[str, ...] = ()) -> Any:
    """``data`` minus the two endpoint settings, with empty objects pruned (an edit may add
    ``config { }`` around the endpoint)."""
    if isinstance(data, list):
        items = [_without_endpoint(item, path) for item in data]
        return [item for item in items if item not in ({}, [])]
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if (path == CONFIG_PATH and key == "endpoint") or (path == OPTIONS_PATH
                                                           and key == OPTION_KEY):
            continue
        pruned = _without_endpoint(value, path + (key,))
        if pruned not in ({}, []) or not isinstance(value, dict | list):
            out[key] = pruned
    return out


# -- HCL text edits ----------------------------------------------------------------------------


def _edit_hcl(file: ConfigFile, form: str, endpoint: str) -> str:
    text = file.text
    try:
        nodes = list(hclscan.walk(hclscan.scan(text)))
    except hclscan.ScanError as exc:
        line = text.count("\n", 0, exc.offset) + 1
        raise _cannot_edit(file.path, f"line {line}: {exc}") from None
    value = hclscan.quote(endpoint)
    nl = newline_of(text)
    if form == "append":
        block = nl.join(['plugin "docker" {', "  config {", f"    endpoint = {value}", "  }",
                         "}", ""])
        separator = "" if not text or text.endswith(nl * 2) else (
            nl if text.endswith(nl) else nl * 2)
        return text + separator + block
    if form == "plugin":
        return _edit_plugin_hcl(file, nodes, value)
    attrs = [n for p, n in nodes if p == OPTIONS_PATH + (OPTION_KEY,) and not n.is_block]
    if attrs:
        return _replace_value(text, attrs[-1], value)
    containers = [n for p, n in nodes if p == OPTIONS_PATH and n.is_block]
    if containers:
        return _insert(text, containers[-1], [f"{hclscan.quote(OPTION_KEY)} = {value}"])
    raise _cannot_edit(file.path, "no client.options block weavenomad can edit (lists and "
                                  "other unusual forms are left alone)")


def _winning_plugin(configs: Sequence) -> int:
    """Which ``plugin "docker"`` block of one file Nomad takes: the last one with a non-empty
    ``config`` (``PluginConfig.Merge``), else the first."""
    return max((i for i, config in enumerate(configs) if config), default=0)


def _edit_plugin_hcl(file: ConfigFile, nodes: list, value: str) -> str:
    """Set the endpoint inside the ``plugin "docker"`` block whose config wins."""
    blocks = [n for p, n in nodes if p == PLUGIN_PATH and n.is_block]
    if not blocks:
        raise _cannot_edit(file.path, 'no plugin "docker" block weavenomad can edit (lists and '
                                      "other unusual forms are left alone)")
    winner = blocks[_winning_plugin([_config_items(block) for block in blocks])]
    inside = list(hclscan.walk(winner.children, PLUGIN_PATH))
    attrs = [n for p, n in inside if p == CONFIG_PATH + ("endpoint",) and not n.is_block]
    if attrs:
        return _replace_value(file.text, attrs[-1], value)
    containers = [n for p, n in inside if p == CONFIG_PATH and n.is_block]
    if containers:
        return _insert(file.text, containers[-1], [f"endpoint = {value}"])
    return _insert(file.text, winner, ["config {", f"  endpoint = {value}", "}"])


def _config_items(block: hclscan.Node) -> list:
    """What a ``plugin "docker"`` block's ``config`` holds, as text nodes (a non-block
    ``config = …`` counts as one item)."""
    return [item for node in block.children if node.keys == ("config",)
            for item in (node.children if node.is_block else (node,))]


def _replace_value(text: str, attr: hclscan.Node, value: str) -> str:
    token = attr.value
    return text[:token.start] + value + text[token.end:]  # type: ignore[union-attr]


def _insert(text: str, block: hclscan.Node, lines: list[str]) -> str:
    """Insert ``lines`` as the last items of ``block``, indented like its other items."""
    outer = hclscan.indent_of(text, block.start)
    unit = "\t" if outer.startswith("\t") or "\n\t" in text else "  "
    inner = outer + unit
    if block.children and hclscan.starts_line(text, block.children[0].start):
        inner = hclscan.indent_of(text, block.children[0].start)
    close = block.close
    nl = newline_of(text)
    body = "".join(inner + line + nl for line in lines)
    if hclscan.starts_line(text, close):  # "}" on its own line: insert the lines above it
        at = hclscan.line_start(text, close)
        return text[:at] + body + text[at:]
    content_end = close
    while content_end > block.open + 1 and text[content_end - 1] in " \t":
        content_end -= 1
    return text[:content_end] + nl + body + outer + text[close:]


def newline_of(text: str) -> str:
    """The file's line ending, so added lines match it (CRLF files stay CRLF)."""
    return "\r\n" if "\r\n" in text else "\n"


# -- JSON edits --------------------------------------------------------------------------------


def _edit_json(file: ConfigFile, form: str, endpoint: str) -> str:
    data = reading.load_json(file.text)
    if form == "append":
        plugins = data.get("plugin")
        entry = {"docker": {"config": {"endpoint": endpoint}}}
        if isinstance(plugins, dict):
            plugins["docker"] = entry["docker"]
        elif isinstance(plugins, list):
            plugins.append(entry)
        else:
            data["plugin"] = entry
    elif form == "plugin":
        dockers = [d for p in _objects(data.get("plugin")) for d in _objects(p.get("docker"))]
        if not dockers:
            raise _cannot_edit(file.path, "no plugin.docker object found")
        winner = dockers[_winning_plugin(_docker_plugins(data))]
        configs = _objects(winner.get("config"))
        if configs:
            configs[-1]["endpoint"] = endpoint
        else:
            winner["config"] = {"endpoint": endpoint}
    else:
        options = [o for c in _objects(data.get("client")) for o in _objects(c.get("options"))]
        if not options:
            raise _cannot_edit(file.path, "no client.options object found")
        holder = next((o for o in reversed(options) if OPTION_KEY in o), options[-1])
        holder[OPTION_KEY] = endpoint
    return _dump_json(data, file.text)


def _dump_json(data: Any, original: str) -> str:
    """JSON laid out like the original: compact when it was one line, else its indent and
    line ending."""
    if "\n" not in original.strip():
        text = json.dumps(data)
    else:
        match = re.search(r"\n([ \t]+)\S", original)
        text = json.dumps(data, indent=match.group(1) if match else 2)
    nl = newline_of(original)
    return text.replace("\n", nl) + (nl if original.endswith("\n") else "")
