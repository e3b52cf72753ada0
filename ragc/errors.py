"""The compiler's error hierarchy: each message is one line naming the problem and what to do about it."""


class RagcError(Exception):
    """Base of every error ragc raises on purpose; the CLI prints it as one line, without a traceback."""


class ModelError(RagcError):
    """The model file is missing, not ONNX, invalid, or uses something ragc cannot compile."""


class ShapeError(RagcError):
    """A shape is dynamic or inconsistent and needs `--shape name=AxBxC`."""


class PlacementError(RagcError):
    """No valid placement exists (e.g. a forced rule names an op no processor in the list can run)."""


class UsageError(RagcError):
    """An option or argument is malformed."""


class PersonalityError(RagcError):
    """A personality or target file is missing, unreadable, or lacks what the cost model needs."""
