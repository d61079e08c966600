from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Array(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Opening(_message.Message):
    __slots__ = ("level", "arrays")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    level: int
    arrays: _containers.RepeatedCompositeFieldContainer[Array]
    def __init__(self, level: _Optional[int] = ..., arrays: _Optional[_Iterable[_Union[Array, _Mapping]]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("openings",)
    OPENINGS_FIELD_NUMBER: _ClassVar[int]
    openings: _containers.RepeatedCompositeFieldContainer[Opening]
    def __init__(self, openings: _Optional[_Iterable[_Union[Opening, _Mapping]]] = ...) -> None: ...

class QueryHeader(_message.Message):
    __slots__ = ("session_id", "query_id", "rows", "features", "output", "linear")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LINEAR_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    query_id: str
    rows: int
    features: int
    output: str
    linear: str
    def __init__(self, session_id: _Optional[str] = ..., query_id: _Optional[str] = ..., rows: _Optional[int] = ..., features: _Optional[int] = ..., output: _Optional[str] = ..., linear: _Optional[str] = ...) -> None: ...

class ServerDeal(_message.Message):
    __slots__ = ("header", "seed", "logit", "products", "beta_add", "beta_rho")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LOGIT_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    BETA_ADD_FIELD_NUMBER: _ClassVar[int]
    BETA_RHO_FIELD_NUMBER: _ClassVar[int]
    header: QueryHeader
    seed: bytes
    logit: Array
    products: _containers.RepeatedCompositeFieldContainer[Array]
    beta_add: Array
    beta_rho: Array
    def __init__(self, header: _Optional[_Union[QueryHeader, _Mapping]] = ..., seed: _Optional[bytes] = ..., logit: _Optional[_Union[Array, _Mapping]] = ..., products: _Optional[_Iterable[_Union[Array, _Mapping]]] = ..., beta_add: _Optional[_Union[Array, _Mapping]] = ..., beta_rho: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...
