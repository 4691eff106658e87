"""What can go wrong with a rerank request, said without HTTP.

The engine, the scheduler and the model layers (one process or Ray) raise these; the HTTP layer
answers each with one status through one table (server/http/errors.py), so nothing below the routes
speaks HTTP and the routes need not know which layer a fault came from.
"""

from __future__ import annotations


class Fault(Exception):
    """A fault a client is told about, with a message that says what happened."""


class InputError(Fault, ValueError):
    """The request asks for something this model cannot do."""


class InputTooLongError(InputError):
    """A pair does not fit the model's context and may not be truncated."""


class TooLarge(Fault, ValueError):
    """The request passes one of the server's limits (documents, characters); refused before any work."""


class TooManyWindows(TooLarge):
    """A document needs more windows than the limit; refused before any work."""


class ModelNotFound(Fault, LookupError):
    """The request names a model this server does not serve."""


class Unavailable(Fault, RuntimeError):
    """The model cannot take this request now."""


class ModelNotReady(Unavailable):
    """The model is still loading, or failed to load."""


class SchedulerClosed(Unavailable):
    """The scheduler no longer accepts work (the server is shutting down)."""


class Busy(Unavailable):
    """Retrying shortly should work: a full queue, busy or lost replicas."""

    retry_after: int = 1
    """Seconds after which a retry may succeed."""


class QueueFull(Busy):
    """Accepting these pairs would pass the queue's bound."""


class Overloaded(Busy):
    """The work waiting would make this request, or one already accepted, miss its deadline."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # from a Ray replica to the gateway, with its retry time
        return type(self), (str(self), self.retry_after)
