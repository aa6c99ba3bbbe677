from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetSecretRequest(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("reference", "value", "version_id", "stages", "created_at", "cache")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    value: bytes
    version_id: str
    stages: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    cache: CacheInfo
    def __init__(self, reference: _Optional[str] = ..., value: _Optional[bytes] = ..., version_id: _Optional[str] = ..., stages: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., cache: _Optional[_Union[CacheInfo, _Mapping]] = ...) -> None: ...

class CacheInfo(_message.Message):
    __slots__ = ("hit", "stale", "fetched_at", "expires_at")
    HIT_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    FETCHED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    stale: bool
    fetched_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, hit: bool = ..., stale: bool = ..., fetched_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BatchGetSecretsRequest(_message.Message):
    __slots__ = ("references",)
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    references: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, references: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetSecretsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchGetResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchGetResult, _Mapping]]] = ...) -> None: ...

class BatchGetResult(_message.Message):
    __slots__ = ("reference", "secret", "error")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    reference: str
    secret: Secret
    error: Error
    def __init__(self, reference: _Optional[str] = ..., secret: _Optional[_Union[Secret, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretMetadata]
    def __init__(self, secrets: _Optional[_Iterable[_Union[SecretMetadata, _Mapping]]] = ...) -> None: ...

class SecretMetadata(_message.Message):
    __slots__ = ("reference", "version_id", "updated_at")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    reference: str
    version_id: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, reference: _Optional[str] = ..., version_id: _Optional[str] = ..., updated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PutSecretRequest(_message.Message):
    __slots__ = ("reference", "value")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    value: bytes
    def __init__(self, reference: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class PutSecretResponse(_message.Message):
    __slots__ = ("reference", "version_id", "created_at")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    reference: str
    version_id: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, reference: _Optional[str] = ..., version_id: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("caller", "grants", "matched_rules", "aws_role")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RULES_FIELD_NUMBER: _ClassVar[int]
    AWS_ROLE_FIELD_NUMBER: _ClassVar[int]
    caller: Caller
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    matched_rules: _containers.RepeatedScalarFieldContainer[str]
    aws_role: AwsRole
    def __init__(self, caller: _Optional[_Union[Caller, _Mapping]] = ..., grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., matched_rules: _Optional[_Iterable[str]] = ..., aws_role: _Optional[_Union[AwsRole, _Mapping]] = ...) -> None: ...

class AwsRole(_message.Message):
    __slots__ = ("role_arn", "session_name", "session_tags", "mapping")
    class SessionTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ROLE_ARN_FIELD_NUMBER: _ClassVar[int]
    SESSION_NAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_TAGS_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    role_arn: str
    session_name: str
    session_tags: _containers.ScalarMap[str, str]
    mapping: str
    def __init__(self, role_arn: _Optional[str] = ..., session_name: _Optional[str] = ..., session_tags: _Optional[_Mapping[str, str]] = ..., mapping: _Optional[str] = ...) -> None: ...

class Caller(_message.Message):
    __slots__ = ("uid", "gid", "pid", "user", "group", "supplementary_gids", "executable", "cgroup", "container_id", "pod_uid", "systemd_unit", "identity_source", "kubernetes", "ecs", "container", "attestation_failures")
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SUPPLEMENTARY_GIDS_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    SYSTEMD_UNIT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_FIELD_NUMBER: _ClassVar[int]
    ECS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FAILURES_FIELD_NUMBER: _ClassVar[int]
    uid: int
    gid: int
    pid: int
    user: str
    group: str
    supplementary_gids: _containers.RepeatedScalarFieldContainer[int]
    executable: str
    cgroup: str
    container_id: str
    pod_uid: str
    systemd_unit: str
    identity_source: str
    kubernetes: KubernetesWorkload
    ecs: EcsWorkload
    container: ContainerWorkload
    attestation_failures: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, uid: _Optional[int] = ..., gid: _Optional[int] = ..., pid: _Optional[int] = ..., user: _Optional[str] = ..., group: _Optional[str] = ..., supplementary_gids: _Optional[_Iterable[int]] = ..., executable: _Optional[str] = ..., cgroup: _Optional[str] = ..., container_id: _Optional[str] = ..., pod_uid: _Optional[str] = ..., systemd_unit: _Optional[str] = ..., identity_source: _Optional[str] = ..., kubernetes: _Optional[_Union[KubernetesWorkload, _Mapping]] = ..., ecs: _Optional[_Union[EcsWorkload, _Mapping]] = ..., container: _Optional[_Union[ContainerWorkload, _Mapping]] = ..., attestation_failures: _Optional[_Iterable[str]] = ...) -> None: ...

class KubernetesWorkload(_message.Message):
    __slots__ = ("namespace", "service_account", "pod_name", "pod_uid", "labels", "container_name", "container_image", "container_image_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    labels: _containers.ScalarMap[str, str]
    container_name: str
    container_image: str
    container_image_id: str
    def __init__(self, namespace: _Optional[str] = ..., service_account: _Optional[str] = ..., pod_name: _Optional[str] = ..., pod_uid: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., container_name: _Optional[str] = ..., container_image: _Optional[str] = ..., container_image_id: _Optional[str] = ...) -> None: ...

class EcsWorkload(_message.Message):
    __slots__ = ("cluster", "task_arn", "task_family", "task_revision", "container_name")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    TASK_ARN_FIELD_NUMBER: _ClassVar[int]
    TASK_FAMILY_FIELD_NUMBER: _ClassVar[int]
    TASK_REVISION_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAME_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    task_arn: str
    task_family: str
    task_revision: str
    container_name: str
    def __init__(self, cluster: _Optional[str] = ..., task_arn: _Optional[str] = ..., task_family: _Optional[str] = ..., task_revision: _Optional[str] = ..., container_name: _Optional[str] = ...) -> None: ...

class ContainerWorkload(_message.Message):
    __slots__ = ("name", "image", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    image: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., image: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WatchSecretsRequest(_message.Message):
    __slots__ = ("references", "known_versions")
    class KnownVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    KNOWN_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    references: _containers.RepeatedScalarFieldContainer[str]
    known_versions: _containers.ScalarMap[str, str]
    def __init__(self, references: _Optional[_Iterable[str]] = ..., known_versions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("reference", "kind", "secret", "previous_version_id", "pending_version_id", "observed_at")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[WatchEvent.Kind]
        CURRENT: _ClassVar[WatchEvent.Kind]
        NEW_VERSION: _ClassVar[WatchEvent.Kind]
        PENDING_VERSION: _ClassVar[WatchEvent.Kind]
        DELETED: _ClassVar[WatchEvent.Kind]
    KIND_UNSPECIFIED: WatchEvent.Kind
    CURRENT: WatchEvent.Kind
    NEW_VERSION: WatchEvent.Kind
    PENDING_VERSION: WatchEvent.Kind
    DELETED: WatchEvent.Kind
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    reference: str
    kind: WatchEvent.Kind
    secret: Secret
    previous_version_id: str
    pending_version_id: str
    observed_at: _timestamp_pb2.Timestamp
    def __init__(self, reference: _Optional[str] = ..., kind: _Optional[_Union[WatchEvent.Kind, str]] = ..., secret: _Optional[_Union[Secret, _Mapping]] = ..., previous_version_id: _Optional[str] = ..., pending_version_id: _Optional[str] = ..., observed_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GeneratorOptions(_message.Message):
    __slots__ = ("length", "exclude_lowercase", "exclude_uppercase", "exclude_numbers", "exclude_punctuation", "include_space", "exclude_characters", "require_each_included_type")
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_LOWERCASE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_UPPERCASE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PUNCTUATION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SPACE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_EACH_INCLUDED_TYPE_FIELD_NUMBER: _ClassVar[int]
    length: int
    exclude_lowercase: bool
    exclude_uppercase: bool
    exclude_numbers: bool
    exclude_punctuation: bool
    include_space: bool
    exclude_characters: str
    require_each_included_type: bool
    def __init__(self, length: _Optional[int] = ..., exclude_lowercase: bool = ..., exclude_uppercase: bool = ..., exclude_numbers: bool = ..., exclude_punctuation: bool = ..., include_space: bool = ..., exclude_characters: _Optional[str] = ..., require_each_included_type: bool = ...) -> None: ...

class RotateSecretRequest(_message.Message):
    __slots__ = ("reference", "generator", "json_key")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    JSON_KEY_FIELD_NUMBER: _ClassVar[int]
    reference: str
    generator: GeneratorOptions
    json_key: str
    def __init__(self, reference: _Optional[str] = ..., generator: _Optional[_Union[GeneratorOptions, _Mapping]] = ..., json_key: _Optional[str] = ...) -> None: ...

class RotateSecretResponse(_message.Message):
    __slots__ = ("reference", "version_id", "previous_version_id", "delegated")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DELEGATED_FIELD_NUMBER: _ClassVar[int]
    reference: str
    version_id: str
    previous_version_id: str
    delegated: bool
    def __init__(self, reference: _Optional[str] = ..., version_id: _Optional[str] = ..., previous_version_id: _Optional[str] = ..., delegated: bool = ...) -> None: ...

class GeneratePasswordRequest(_message.Message):
    __slots__ = ("options",)
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    options: GeneratorOptions
    def __init__(self, options: _Optional[_Union[GeneratorOptions, _Mapping]] = ...) -> None: ...

class GeneratePasswordResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    def __init__(self, value: _Optional[bytes] = ...) -> None: ...

class InvalidateCacheRequest(_message.Message):
    __slots__ = ("reference", "prefix")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    reference: str
    prefix: str
    def __init__(self, reference: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class InvalidateCacheResponse(_message.Message):
    __slots__ = ("invalidated",)
    INVALIDATED_FIELD_NUMBER: _ClassVar[int]
    invalidated: int
    def __init__(self, invalidated: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("cache_entries", "cache_bytes", "cache_hits", "cache_misses", "stale_served", "watchers", "rotations_seen", "policy_rules", "backends", "roles")
    CACHE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    STALE_SERVED_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    ROTATIONS_SEEN_FIELD_NUMBER: _ClassVar[int]
    POLICY_RULES_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    cache_entries: int
    cache_bytes: int
    cache_hits: int
    cache_misses: int
    stale_served: int
    watchers: int
    rotations_seen: int
    policy_rules: int
    backends: _containers.RepeatedCompositeFieldContainer[BackendStats]
    roles: _containers.RepeatedCompositeFieldContainer[RoleStats]
    def __init__(self, cache_entries: _Optional[int] = ..., cache_bytes: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cache_misses: _Optional[int] = ..., stale_served: _Optional[int] = ..., watchers: _Optional[int] = ..., rotations_seen: _Optional[int] = ..., policy_rules: _Optional[int] = ..., backends: _Optional[_Iterable[_Union[BackendStats, _Mapping]]] = ..., roles: _Optional[_Iterable[_Union[RoleStats, _Mapping]]] = ...) -> None: ...

class RoleStats(_message.Message):
    __slots__ = ("role_arn", "sessions", "assume_calls", "assume_failures", "backend_calls", "backend_errors", "cache_entries", "cache_bytes")
    ROLE_ARN_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ASSUME_CALLS_FIELD_NUMBER: _ClassVar[int]
    ASSUME_FAILURES_FIELD_NUMBER: _ClassVar[int]
    BACKEND_CALLS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_ERRORS_FIELD_NUMBER: _ClassVar[int]
    CACHE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    role_arn: str
    sessions: int
    assume_calls: int
    assume_failures: int
    backend_calls: int
    backend_errors: int
    cache_entries: int
    cache_bytes: int
    def __init__(self, role_arn: _Optional[str] = ..., sessions: _Optional[int] = ..., assume_calls: _Optional[int] = ..., assume_failures: _Optional[int] = ..., backend_calls: _Optional[int] = ..., backend_errors: _Optional[int] = ..., cache_entries: _Optional[int] = ..., cache_bytes: _Optional[int] = ...) -> None: ...

class BackendStats(_message.Message):
    __slots__ = ("backend", "calls", "errors")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    backend: str
    calls: int
    errors: int
    def __init__(self, backend: _Optional[str] = ..., calls: _Optional[int] = ..., errors: _Optional[int] = ...) -> None: ...

class ReloadPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPolicyResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: int
    def __init__(self, rules: _Optional[int] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("operation", "patterns")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    operation: str
    patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, operation: _Optional[str] = ..., patterns: _Optional[_Iterable[str]] = ...) -> None: ...
