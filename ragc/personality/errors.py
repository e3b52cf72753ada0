"""Errors of the chip personality and target files: one line naming the problem and the fix."""

from ragc.errors import RagcError


class PersonalityError(RagcError):
    """A personality or target file is missing, unreadable, or lacks what the cost model needs."""
