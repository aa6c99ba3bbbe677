"""Errors: one exception class per gRPC status code the agent uses, all under PsstError."""

from __future__ import annotations

import grpc

__all__ = [
    "PsstError",
    "InvalidArgument",
    "PermissionDenied",
    "NotFound",
    "Unavailable",
    "Unauthenticated",
    "FailedPrecondition",
    "ResourceExhausted",
    "DataLoss",
    "error_for",
]


class PsstError(Exception):
    """A failed call, or a failed item of a batch: the gRPC status code and the agent's message.

    The agent never puts a secret value in a message. Catch a subclass (``NotFound``,
    ``PermissionDenied``, ...) or look at ``.code`` (a ``grpc.StatusCode``).
    """

    #: The code instances of this class carry by default (subclasses fix it).
    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str = "",
        *,
        code: grpc.StatusCode | None = None,
        reference: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.message: str = message
        #: For a batch item: the reference it was for.
        self.reference: str | None = reference

    @property
    def code_name(self) -> str:
        """The code as the proto spells it: ``"NOT_FOUND"``."""
        return self.code.name

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" if self.message else self.code.name

    def __repr__(self) -> str:
        ref = f", reference={self.reference!r}" if self.reference is not None else ""
        return f"{type(self).__name__}(code={self.code.name}, message={self.message!r}{ref})"


class InvalidArgument(PsstError):
    """The reference or request is malformed."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class PermissionDenied(PsstError):
    """The policy does not grant this to the calling process (whether or not the secret exists)."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(PsstError):
    """The secret, version or JSON key does not exist."""

    default_code = grpc.StatusCode.NOT_FOUND


class Unavailable(PsstError):
    """The agent (or its backend) cannot be reached."""

    default_code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(PsstError):
    """The agent could not identify the calling process."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(PsstError):
    """The agent cannot do it as configured (e.g. the backend is not enabled)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(PsstError):
    """A size or rate limit was hit."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DataLoss(PsstError):
    """A stored version failed authentication (tampered, moved, or the wrong master key)."""

    default_code = grpc.StatusCode.DATA_LOSS


_CLASSES: dict[grpc.StatusCode, type[PsstError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgument,
        PermissionDenied,
        NotFound,
        Unavailable,
        Unauthenticated,
        FailedPrecondition,
        ResourceExhausted,
        DataLoss,
    )
}
_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def error_for(
    code: grpc.StatusCode | int, message: str = "", *, reference: str | None = None
) -> PsstError:
    """The exception for a status code (a ``grpc.StatusCode`` or its number, as batch items carry
    it): the matching subclass, else a plain ``PsstError``."""
    if not isinstance(code, grpc.StatusCode):
        code = _BY_NUMBER.get(int(code), grpc.StatusCode.UNKNOWN)
    cls = _CLASSES.get(code, PsstError)
    return cls(message, code=code, reference=reference)


def from_rpc_error(err: grpc.RpcError) -> PsstError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return error_for(code or grpc.StatusCode.UNKNOWN, details or "")
