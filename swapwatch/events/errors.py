"""Errors of the event log and of delivery, under the project's root error."""

from swapwatch.errors import ConfigError, SwapwatchError


class OutboxError(SwapwatchError):
    """The event outbox (a SQLite file) cannot be opened or written."""

    exit_code = 5


class OutboxCorrupt(OutboxError):
    """The outbox file is not a readable swapwatch outbox."""


class OutboxFull(OutboxError):
    """The outbox reached its size limit, or the disk is full."""


class SinkError(SwapwatchError):
    """A sink failed to deliver an event; the dispatcher retries it."""

    exit_code = 6


class SinkUnavailable(SinkError):
    """The receiver could not be reached at all (refused, unresolvable, no connection in time):
    the outage is the sink's, not the event's, so the try does not count against the event."""


class SinkRejected(SinkError):
    """The receiver refused the event for good (e.g. HTTP 400): retrying cannot help."""


class SinkConfigError(ConfigError):
    """A sink specification or its options are invalid."""


class SignatureError(SwapwatchError):
    """A webhook signature is missing, malformed, stale or does not match."""

    exit_code = 7
