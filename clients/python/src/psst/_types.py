"""What the client returns: plain Python objects, not protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from .v1 import psst_pb2

__all__ = ["Secret", "CacheInfo", "SecretMetadata", "Written", "Identity", "Caller", "Grant"]


def _time(msg: object, field: str) -> datetime | None:
    if not msg.HasField(field):  # type: ignore[attr-defined]
        return None
    ts: Timestamp = getattr(msg, field)
    return ts.ToDatetime(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """How the agent's cache served a secret."""

    #: The value came from the cache without a backend call for this request.
    hit: bool = False
    #: The value is past its TTL and was served because the backend could not be reached.
    stale: bool = False
    fetched_at: datetime | None = None
    expires_at: datetime | None = None


class Secret:
    """A secret as the agent served it.

    The value is ``.value`` (bytes) or ``.text()``; ``repr()`` and ``str()`` never show it.
    """

    __slots__ = ("reference", "version_id", "stages", "created_at", "cache", "_value")

    reference: str
    version_id: str
    stages: tuple[str, ...]
    created_at: datetime | None
    cache: CacheInfo

    def __init__(
        self,
        reference: str,
        value: bytes,
        version_id: str = "",
        stages: tuple[str, ...] = (),
        created_at: datetime | None = None,
        cache: CacheInfo | None = None,
    ) -> None:
        self.reference = reference
        self._value = bytes(value)
        self.version_id = version_id
        self.stages = tuple(stages)
        self.created_at = created_at
        self.cache = cache if cache is not None else CacheInfo()

    @property
    def value(self) -> bytes:
        """The secret's bytes: the whole secret, or the JSON key's value when the reference has
        ``#key``."""
        return self._value

    def text(self, encoding: str = "utf-8") -> str:
        """The value decoded as text."""
        return self._value.decode(encoding)

    def __repr__(self) -> str:
        return (
            f"Secret(reference={self.reference!r}, version_id={self.version_id!r}, "
            f"value=<redacted {len(self._value)} bytes>)"
        )

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __reduce__(self):  # pickling would copy the value somewhere unexpected
        raise TypeError("psst.Secret cannot be pickled")

    @classmethod
    def _from_proto(cls, p: psst_pb2.Secret) -> Secret:
        cache = CacheInfo()
        if p.HasField("cache"):
            cache = CacheInfo(
                hit=p.cache.hit,
                stale=p.cache.stale,
                fetched_at=_time(p.cache, "fetched_at"),
                expires_at=_time(p.cache, "expires_at"),
            )
        return cls(
            reference=p.reference,
            value=p.value,
            version_id=p.version_id,
            stages=tuple(p.stages),
            created_at=_time(p, "created_at"),
            cache=cache,
        )


@dataclass(frozen=True, slots=True)
class SecretMetadata:
    """A listed secret: metadata only, never a value."""

    reference: str
    #: The id of the current version.
    version_id: str
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """The version a ``put`` created."""

    #: The new version as a reference with a version selector, e.g. ``local:demo/db?version=2``.
    reference: str
    version_id: str
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """The calling process as the kernel and /proc describe it."""

    uid: int = 0
    gid: int = 0
    #: 0 when the agent cannot see the process (another PID namespace).
    pid: int = 0
    user: str = ""
    group: str = ""
    supplementary_gids: tuple[int, ...] = ()
    executable: str = ""
    cgroup: str = ""
    container_id: str = ""
    pod_uid: str = ""
    systemd_unit: str = ""
    #: "process" when identified from /proc, "uid" when only uid and gid are known.
    identity_source: str = ""


@dataclass(frozen=True, slots=True)
class Grant:
    """What the policy grants for one operation ("read", "list" or "write")."""

    operation: str
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """How the agent sees the caller and what the policy grants it (``whoami``)."""

    caller: Caller
    grants: tuple[Grant, ...] = ()
    matched_rules: tuple[str, ...] = ()

    @classmethod
    def _from_proto(cls, p: psst_pb2.WhoAmIResponse) -> Identity:
        c = p.caller
        return cls(
            caller=Caller(
                uid=c.uid,
                gid=c.gid,
                pid=c.pid,
                user=c.user,
                group=c.group,
                supplementary_gids=tuple(c.supplementary_gids),
                executable=c.executable,
                cgroup=c.cgroup,
                container_id=c.container_id,
                pod_uid=c.pod_uid,
                systemd_unit=c.systemd_unit,
                identity_source=c.identity_source,
            ),
            grants=tuple(Grant(g.operation, tuple(g.patterns)) for g in p.grants),
            matched_rules=tuple(p.matched_rules),
        )
