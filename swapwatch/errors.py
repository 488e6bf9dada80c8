"""The exception tree. Library errors are translated into these at the edges."""


class SwapwatchError(Exception):
    """Root of every error swapwatch raises on purpose."""

    exit_code = 1


class ConfigError(SwapwatchError):
    """A setting or command-line argument is invalid."""

    exit_code = 2


class SourceError(SwapwatchError):
    """A video source cannot be opened or read."""

    exit_code = 3


class SourceNotFound(SourceError):
    """A local file does not exist."""


class UnsupportedSource(SourceError):
    """The URL scheme or container is not one swapwatch can read."""


class NoVideoStream(SourceError):
    """The source opened but holds no video stream."""


class SourceUnreadable(SourceError):
    """The source is corrupt, truncated or unreachable."""


class EndOfStream(SourceError):
    """The source ended normally; `recv()` raises it after the last frame."""


class ModelError(SwapwatchError):
    """A model file is missing, malformed or cannot run."""

    exit_code = 4


class ModelNotInstalled(ModelError):
    """No trained detector is installed and none was given."""


class EngineError(ModelError):
    """An inference backend failed to load or to run."""
