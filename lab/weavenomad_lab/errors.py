"""The lab's own error: a :class:`~weavenomad.errors.WeavenomadError`, so the ``weavenomad``
command reports it in one line with its exit code, like the product's errors."""

from __future__ import annotations

from weavenomad.errors import WeavenomadError


class LabError(WeavenomadError):
    """The local lab could not be brought up, inspected or torn down."""
