"""Keep tokens out of everything the process writes: output, errors, tracebacks and logs.

The tokens are collected once they are known (environment, flags, config file: see
:class:`~weavenomad.cli.options.AppContext`). Output and error lines are redacted where they
are printed. Config text we print (bootstrap's diff of the Nomad agent config) also hides the
value of every secret-named attribute, since the agent's own Consul or Vault token is none we
were given (:func:`hide_config_secrets`). Log records are redacted where they are made, by a
log record factory, so the rule holds whatever handlers and formatters a command installs later
(the reconciler replaces the root handlers with its own): a record's message, and a traceback
that would show a token, come out with ``<redacted>`` in its place.

Not covered, because nothing of ours puts a token there: the ``extra`` fields of a record.
Secrets never travel in URLs (Nomad's token is a header, and the Consul adapter moves any
``token`` parameter into one), so urllib3's debug lines, which show method and URL, carry none;
``--debug`` never turns on ``http.client``'s header dump.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable

from weavenomad.errors import redact

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def remember(values: Iterable[str | None]) -> None:
    """Add tokens to hide from now on (short or empty values are ignored by :func:`redact`)."""
    with _lock:
        _secrets.update(v for v in values if v)


def known() -> list[str]:
    with _lock:
        # longest first: a token that contains another must be replaced whole
        return sorted(_secrets, key=len, reverse=True)


def hide(text: str) -> str:
    return redact(text, known())


#: a quoted value of a config attribute whose name says it is a secret: HCL ``token = "…"``,
#: JSON ``"token": "…"``, also inside a JSON string (``\\"``-escaped quotes), as bootstrap's
#: diffs of the Nomad agent config are when printed
_CONFIG_SECRET = re.compile(
    r'(?i)(\b[\w.-]*(?:token|secret|encrypt|password|passwd)[\w.-]*(?:\\?")?\s*[=:]\s*'
    r'(?:\\?"))((?:[^"\\]|\\[^"])*)(\\?")')


def hide_config_secrets(text: str) -> str:
    """Replace the values of secret-named attributes in config text (a Nomad agent's
    ``consul { token = "…" }``, ``vault`` token, gossip ``encrypt`` key) by a marker, whatever
    token the operator gave us. Pure."""
    return _CONFIG_SECRET.sub(lambda m: f"{m.group(1)}<redacted>{m.group(3)}", text)


def forget_all() -> None:
    """For tests: start again with no secrets."""
    with _lock:
        _secrets.clear()


class _RedactedRecord(logging.LogRecord):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        secrets = known()
        if not secrets or not self.exc_info or self.exc_info[1] is None:
            return
        text = "".join(traceback.format_exception(*self.exc_info)).rstrip("\n")
        clean = redact(text, secrets)
        if clean != text:
            # formatters print exc_text as it is; exc_info would be formatted afresh
            self.exc_text, self.exc_info = clean, None

    def getMessage(self) -> str:  # noqa: N802 - logging's name
        message = super().getMessage()
        secrets = known()
        return redact(message, secrets) if secrets else message


def install_log_redaction() -> None:
    """Make every log record from now on hide the remembered secrets. Idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    logging.setLogRecordFactory(_RedactedRecord)
