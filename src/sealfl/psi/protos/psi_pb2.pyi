from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PsiMessage(_message.Message):
    __slots__ = ("hello", "masked", "remasked", "finish")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    REMASKED_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    masked: Points
    remasked: Points
    finish: Finish
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., masked: _Optional[_Union[Points, _Mapping]] = ..., remasked: _Optional[_Union[Points, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("protocol", "role", "mode", "set_size", "nonce", "context_digest", "statistical_bits")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STATISTICAL_BITS_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    role: str
    mode: str
    set_size: int
    nonce: bytes
    context_digest: bytes
    statistical_bits: int
    def __init__(self, protocol: _Optional[str] = ..., role: _Optional[str] = ..., mode: _Optional[str] = ..., set_size: _Optional[int] = ..., nonce: _Optional[bytes] = ..., context_digest: _Optional[bytes] = ..., statistical_bits: _Optional[int] = ...) -> None: ...

class Points(_message.Message):
    __slots__ = ("session", "seq", "points")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    seq: int
    points: bytes
    def __init__(self, session: _Optional[bytes] = ..., seq: _Optional[int] = ..., points: _Optional[bytes] = ...) -> None: ...

class Finish(_message.Message):
    __slots__ = ("session", "transcript", "count")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    transcript: bytes
    count: int
    def __init__(self, session: _Optional[bytes] = ..., transcript: _Optional[bytes] = ..., count: _Optional[int] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
