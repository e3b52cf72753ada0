"""The runtime's error hierarchy: every message is one line naming the problem and what to do."""


class RuntimeMinError(Exception):
    """Base of every error runtime_min raises on purpose."""


class BundleError(RuntimeMinError):
    """The bundle is missing, corrupt, tampered with, or of a format this runtime does not read."""


class InputError(RuntimeMinError):
    """The feeds given to a plan do not match its inputs (name, dtype or shape)."""


class BackendUnavailable(RuntimeMinError):
    """A processor's backend cannot start here (library, driver or device missing)."""


class DeviceFailure(RuntimeMinError):
    """A processor failed while running a plan; reload the plan to use it again."""


class RuntimeMinWarning(UserWarning):
    """Something still works, but not as compiled: e.g. a processor's partitions run from their CPU fallbacks."""
