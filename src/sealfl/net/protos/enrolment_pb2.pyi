from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChallengeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChallengeReply(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    def __init__(self, nonce: _Optional[bytes] = ...) -> None: ...

class EnrolRequest(_message.Message):
    __slots__ = ("certificate_pem", "nonce", "signature", "predecessor_fingerprint", "predecessor_signature")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PREDECESSOR_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PREDECESSOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    nonce: bytes
    signature: bytes
    predecessor_fingerprint: str
    predecessor_signature: bytes
    def __init__(self, certificate_pem: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., predecessor_fingerprint: _Optional[str] = ..., predecessor_signature: _Optional[bytes] = ...) -> None: ...

class EnrolReply(_message.Message):
    __slots__ = ("service_port", "expires_at", "fingerprint", "lineage")
    SERVICE_PORT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    service_port: int
    expires_at: float
    fingerprint: str
    lineage: str
    def __init__(self, service_port: _Optional[int] = ..., expires_at: _Optional[float] = ..., fingerprint: _Optional[str] = ..., lineage: _Optional[str] = ...) -> None: ...

class HandoverRequest(_message.Message):
    __slots__ = ("from_fingerprint",)
    FROM_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    from_fingerprint: str
    def __init__(self, from_fingerprint: _Optional[str] = ...) -> None: ...

class HandoverStep(_message.Message):
    __slots__ = ("certificate_pem", "signature")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    signature: bytes
    def __init__(self, certificate_pem: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class HandoverReply(_message.Message):
    __slots__ = ("steps",)
    STEPS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[HandoverStep]
    def __init__(self, steps: _Optional[_Iterable[_Union[HandoverStep, _Mapping]]] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaveReply(_message.Message):
    __slots__ = ("left",)
    LEFT_FIELD_NUMBER: _ClassVar[int]
    left: bool
    def __init__(self, left: _Optional[bool] = ...) -> None: ...
