from sealfl.mpc.protos import mpc_pb2 as _mpc_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("mode", "features", "queries_served", "queries_refused", "outputs", "row_budget", "budget_period_s", "rows_left")
    MODE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    QUERIES_SERVED_FIELD_NUMBER: _ClassVar[int]
    QUERIES_REFUSED_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ROW_BUDGET_FIELD_NUMBER: _ClassVar[int]
    BUDGET_PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    ROWS_LEFT_FIELD_NUMBER: _ClassVar[int]
    mode: str
    features: int
    queries_served: int
    queries_refused: int
    outputs: _containers.RepeatedScalarFieldContainer[str]
    row_budget: int
    budget_period_s: float
    rows_left: int
    def __init__(self, mode: _Optional[str] = ..., features: _Optional[int] = ..., queries_served: _Optional[int] = ..., queries_refused: _Optional[int] = ..., outputs: _Optional[_Iterable[str]] = ..., row_budget: _Optional[int] = ..., budget_period_s: _Optional[float] = ..., rows_left: _Optional[int] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("inputs", "output")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    inputs: _mpc_pb2.Array
    output: str
    def __init__(self, inputs: _Optional[_Union[_mpc_pb2.Array, _Mapping]] = ..., output: _Optional[str] = ...) -> None: ...

class PredictReply(_message.Message):
    __slots__ = ("probabilities", "logits", "labels")
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    probabilities: _mpc_pb2.Array
    logits: _mpc_pb2.Array
    labels: _mpc_pb2.Array
    def __init__(self, probabilities: _Optional[_Union[_mpc_pb2.Array, _Mapping]] = ..., logits: _Optional[_Union[_mpc_pb2.Array, _Mapping]] = ..., labels: _Optional[_Union[_mpc_pb2.Array, _Mapping]] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "masked_model", "frac_bits", "dealer_address", "dealer_fingerprint")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MASKED_MODEL_FIELD_NUMBER: _ClassVar[int]
    FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    DEALER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DEALER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    masked_model: _mpc_pb2.Array
    frac_bits: int
    dealer_address: str
    dealer_fingerprint: str
    def __init__(self, session_id: _Optional[str] = ..., masked_model: _Optional[_Union[_mpc_pb2.Array, _Mapping]] = ..., frac_bits: _Optional[int] = ..., dealer_address: _Optional[str] = ..., dealer_fingerprint: _Optional[str] = ...) -> None: ...

class PrefetchRequest(_message.Message):
    __slots__ = ("header", "message")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    header: _mpc_pb2.QueryHeader
    message: _mpc_pb2.Message
    def __init__(self, header: _Optional[_Union[_mpc_pb2.QueryHeader, _Mapping]] = ..., message: _Optional[_Union[_mpc_pb2.Message, _Mapping]] = ...) -> None: ...

class PrefetchReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("header", "query_id", "message")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    header: _mpc_pb2.QueryHeader
    query_id: str
    message: _mpc_pb2.Message
    def __init__(self, header: _Optional[_Union[_mpc_pb2.QueryHeader, _Mapping]] = ..., query_id: _Optional[str] = ..., message: _Optional[_Union[_mpc_pb2.Message, _Mapping]] = ...) -> None: ...

class StepReply(_message.Message):
    __slots__ = ("message", "done")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    message: _mpc_pb2.Message
    done: bool
    def __init__(self, message: _Optional[_Union[_mpc_pb2.Message, _Mapping]] = ..., done: _Optional[bool] = ...) -> None: ...

class DealerSessionRequest(_message.Message):
    __slots__ = ("features",)
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: int
    def __init__(self, features: _Optional[int] = ...) -> None: ...

class DealerSession(_message.Message):
    __slots__ = ("session_id", "token", "mask")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    token: bytes
    mask: _mpc_pb2.Array
    def __init__(self, session_id: _Optional[str] = ..., token: _Optional[bytes] = ..., mask: _Optional[_Union[_mpc_pb2.Array, _Mapping]] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _mpc_pb2.QueryHeader
    def __init__(self, header: _Optional[_Union[_mpc_pb2.QueryHeader, _Mapping]] = ...) -> None: ...

class ClientSeed(_message.Message):
    __slots__ = ("query_id", "seed")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    seed: bytes
    def __init__(self, query_id: _Optional[str] = ..., seed: _Optional[bytes] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("session_id", "token", "query_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    token: bytes
    query_id: str
    def __init__(self, session_id: _Optional[str] = ..., token: _Optional[bytes] = ..., query_id: _Optional[str] = ...) -> None: ...
