"""One exception hierarchy, one table of exit codes.

Every error a user can meet is a :class:`WeavenomadError` whose message is a single line that
says what failed and, where we know it, the flag or variable that fixes it (``hint``). The CLI
maps these to exit codes in one place (``weavenomad.cli.main``); nothing else calls ``sys.exit``.

Errors are also classified as *temporary* (worth retrying: a backend that is down or answered
5xx) or *permanent* (bad input, 4xx, denied), the way kopf splits TemporaryError/PermanentError,
so retry loops need no guesswork.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: the operation failed; nothing (more) was changed
    ERROR = 1
    #: finished, but the result needs attention: placement failures, warnings, not converged.
    #: Same meaning as ``nomad job run``'s exit code 2.
    ATTENTION = 2
    #: bad flags or arguments (sysexits EX_USAGE); kept apart from 2, which means ATTENTION
    USAGE = 64
    #: interrupted by Ctrl-C (128 + SIGINT)
    INTERRUPTED = 130


class WeavenomadError(Exception):
    """Base of every error meant for a user."""

    exit_code: ExitCode = ExitCode.ERROR
    temporary: bool = False

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())

    def __str__(self) -> str:
        return self.one_line()


class ConfigError(WeavenomadError):
    """A setting, flag value or configuration file is invalid."""


class ValidationError(WeavenomadError):
    """Input data (a CIDR, a job, a tenant name, a Nomad config) is invalid."""


class NotFoundError(WeavenomadError):
    """A named thing (tenant, job, lab, node) does not exist."""


class ConflictError(WeavenomadError):
    """The change collides with existing state (overlap, name taken, a record owned by another)."""


class PrivilegeError(WeavenomadError):
    """The operation needs privileges this process does not have (root, an ACL token)."""


class BackendError(WeavenomadError):
    """A call to Nomad, Consul, Docker or Weave failed.

    ``backend`` names the service ("nomad", "consul", "docker", "weave"), ``status`` is the
    HTTP status when there was an answer, ``body`` the answer's text (already trimmed).
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        status: int | None = None,
        body: str = "",
        hint: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.backend = backend
        self.status = status
        self.body = body


class BackendUnavailable(BackendError):
    """No answer at all: connection refused, DNS, TLS handshake, timeout."""

    temporary = True


class BackendServerError(BackendError):
    """The backend answered 5xx."""

    temporary = True


class BackendRequestError(BackendError):
    """The backend refused the request as invalid (4xx other than 401/403/404)."""


class BackendNotFound(BackendError):
    """The backend answered 404."""


class BackendAuthError(BackendError):
    """The backend answered 401 or 403: a missing or insufficient ACL token."""


class CasConflict(BackendError):
    """A Consul check-and-set lost the race; re-read and try again."""

    temporary = True


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every secret (token, key) that occurs in ``text`` by a fixed marker.

    Secrets shorter than 4 characters are not replaced: they would mangle ordinary words and
    are not worth hiding.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text
