"""Python client of the psst agent (psstd): secrets over gRPC on the agent's Unix socket.

    import psst

    with psst.Client() as client:          # $PSST_SOCKET, else /run/psst/psst.sock
        with psst.Source(client, ["sm:prod/db"], on_update=reconnect) as source:
            password = source.get("sm:prod/db").text()   # always current, from memory

        secret = client.get("local:demo/db-password")
        password = secret.value            # bytes; secret.text() for str

        with client.watch(["local:demo/db-password"]) as watch:
            for event in watch:            # CURRENT, then NEW_VERSION, ... (reconnects itself)
                if event.secret is not None:
                    reconfigure(event.secret.value)

Errors are ``psst.PsstError`` subclasses keeping the gRPC code: ``NotFound``,
``PermissionDenied``, ``InvalidArgument``, ``Unavailable``, ``Unauthenticated``,
``FailedPrecondition``, ``ResourceExhausted``, ``DataLoss``; ``UntrustedAgent`` when the socket
is served by another uid than expected. ``psst.aio`` is the asyncio client; ``psst.load_env``
reads secrets into the environment; ``psst.settings`` is a pydantic-settings source.
"""

from ._client import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_SOCKET,
    DEFAULT_WATCH_MAX_BACKOFF,
    MAX_WATCH_BACKOFF,
    SOCKET_ENV,
    Client,
    socket_path,
)
from ._errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PsstError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    error_for,
)
from ._env import load_env, read_env_file
from ._peer import EXPECTED_UID_ENV, UntrustedAgent
from ._source import Source
from ._types import CacheInfo, Caller, Grant, Identity, Secret, SecretMetadata, Written
from ._watch import Watch, WatchEvent, WatchEventKind, WatchStatus

__version__ = "0.1.0"

__all__ = [
    "Client",
    "socket_path",
    "DEFAULT_SOCKET",
    "SOCKET_ENV",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_WATCH_MAX_BACKOFF",
    "MAX_WATCH_BACKOFF",
    "EXPECTED_UID_ENV",
    "Secret",
    "CacheInfo",
    "SecretMetadata",
    "Written",
    "Identity",
    "Caller",
    "Grant",
    "Watch",
    "Source",
    "load_env",
    "read_env_file",
    "WatchEvent",
    "WatchEventKind",
    "WatchStatus",
    "UntrustedAgent",
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
