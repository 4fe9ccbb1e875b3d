"""The errors a caller of the service may see; the D-Bus layer maps each to a named io.agtap.Error.*."""


class ControllerError(Exception):
    """Base: io.agtap.Error.Failed unless a subclass says otherwise."""


class InvalidArgument(ControllerError, ValueError):
    """io.agtap.Error.InvalidArgument"""


class NotFound(ControllerError, LookupError):
    """io.agtap.Error.NotFound"""


class Failed(ControllerError, RuntimeError):
    """io.agtap.Error.Failed"""
