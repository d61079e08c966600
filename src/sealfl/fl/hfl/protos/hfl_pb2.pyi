from sealfl.net.protos import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Settings(_message.Message):
    __slots__ = ("model", "rounds", "local_epochs", "local_steps", "batch_size", "learning_rate", "momentum", "weight_decay", "seed", "pipeline", "aggregation", "server_learning_rate", "server_momentum", "lr_milestones")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    SERVER_LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SERVER_MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    LR_MILESTONES_FIELD_NUMBER: _ClassVar[int]
    model: str
    rounds: int
    local_epochs: int
    local_steps: int
    batch_size: int
    learning_rate: float
    momentum: float
    weight_decay: float
    seed: int
    pipeline: str
    aggregation: str
    server_learning_rate: float
    server_momentum: float
    lr_milestones: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, model: _Optional[str] = ..., rounds: _Optional[int] = ..., local_epochs: _Optional[int] = ..., local_steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., momentum: _Optional[float] = ..., weight_decay: _Optional[float] = ..., seed: _Optional[int] = ..., pipeline: _Optional[str] = ..., aggregation: _Optional[str] = ..., server_learning_rate: _Optional[float] = ..., server_momentum: _Optional[float] = ..., lr_milestones: _Optional[_Iterable[int]] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("worker_id", "settings", "schema_digest", "manifest_digest", "num_examples", "seat_token")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    settings: Settings
    schema_digest: str
    manifest_digest: str
    num_examples: int
    seat_token: bytes
    def __init__(self, worker_id: _Optional[int] = ..., settings: _Optional[_Union[Settings, _Mapping]] = ..., schema_digest: _Optional[str] = ..., manifest_digest: _Optional[str] = ..., num_examples: _Optional[int] = ..., seat_token: _Optional[bytes] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("refused", "run_id", "next_version", "seat_token", "worker_num", "round_deadline_s", "settings")
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_NUM_FIELD_NUMBER: _ClassVar[int]
    ROUND_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    refused: str
    run_id: str
    next_version: int
    seat_token: bytes
    worker_num: int
    round_deadline_s: float
    settings: Settings
    def __init__(self, refused: _Optional[str] = ..., run_id: _Optional[str] = ..., next_version: _Optional[int] = ..., seat_token: _Optional[bytes] = ..., worker_num: _Optional[int] = ..., round_deadline_s: _Optional[float] = ..., settings: _Optional[_Union[Settings, _Mapping]] = ...) -> None: ...

class GlobalRequest(_message.Message):
    __slots__ = ("worker_id", "version", "seat_token")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    version: int
    seat_token: bytes
    def __init__(self, worker_id: _Optional[int] = ..., version: _Optional[int] = ..., seat_token: _Optional[bytes] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("round", "loss", "accuracy", "per_class_accuracy")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    round: int
    loss: float
    accuracy: float
    per_class_accuracy: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, round: _Optional[int] = ..., loss: _Optional[float] = ..., accuracy: _Optional[float] = ..., per_class_accuracy: _Optional[_Iterable[float]] = ...) -> None: ...

class GlobalHeader(_message.Message):
    __slots__ = ("state", "version", "reason", "evaluation", "model_path", "release_path", "deadline_in_s")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[GlobalHeader.State]
        MODEL: _ClassVar[GlobalHeader.State]
        WAITING: _ClassVar[GlobalHeader.State]
        DONE: _ClassVar[GlobalHeader.State]
        STOPPED: _ClassVar[GlobalHeader.State]
    STATE_UNSPECIFIED: GlobalHeader.State
    MODEL: GlobalHeader.State
    WAITING: GlobalHeader.State
    DONE: GlobalHeader.State
    STOPPED: GlobalHeader.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    RELEASE_PATH_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_IN_S_FIELD_NUMBER: _ClassVar[int]
    state: GlobalHeader.State
    version: int
    reason: str
    evaluation: Evaluation
    model_path: str
    release_path: str
    deadline_in_s: float
    def __init__(self, state: _Optional[_Union[GlobalHeader.State, str]] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., model_path: _Optional[str] = ..., release_path: _Optional[str] = ..., deadline_in_s: _Optional[float] = ...) -> None: ...

class GlobalMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: GlobalHeader
    chunk: _tensor_pb2.TensorChunk
    def __init__(self, header: _Optional[_Union[GlobalHeader, _Mapping]] = ..., chunk: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ...) -> None: ...

class UpdateHeader(_message.Message):
    __slots__ = ("worker_id", "version", "seat_token", "num_examples", "train_loss", "train_seconds", "manifest_digest")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    version: int
    seat_token: bytes
    num_examples: int
    train_loss: float
    train_seconds: float
    manifest_digest: str
    def __init__(self, worker_id: _Optional[int] = ..., version: _Optional[int] = ..., seat_token: _Optional[bytes] = ..., num_examples: _Optional[int] = ..., train_loss: _Optional[float] = ..., train_seconds: _Optional[float] = ..., manifest_digest: _Optional[str] = ...) -> None: ...

class UpdateMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UpdateHeader
    chunk: _tensor_pb2.TensorChunk
    def __init__(self, header: _Optional[_Union[UpdateHeader, _Mapping]] = ..., chunk: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ...) -> None: ...

class UpdateReply(_message.Message):
    __slots__ = ("status", "reason")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[UpdateReply.Status]
        ACCEPTED: _ClassVar[UpdateReply.Status]
        REFUSED: _ClassVar[UpdateReply.Status]
        STOPPED: _ClassVar[UpdateReply.Status]
    STATUS_UNSPECIFIED: UpdateReply.Status
    ACCEPTED: UpdateReply.Status
    REFUSED: UpdateReply.Status
    STOPPED: UpdateReply.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    status: UpdateReply.Status
    reason: str
    def __init__(self, status: _Optional[_Union[UpdateReply.Status, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class TrainedModel(_message.Message):
    __slots__ = ("settings", "manifest_json", "values", "rounds_done", "evaluation", "run_id", "contributors", "schema_json")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_DONE_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    settings: Settings
    manifest_json: str
    values: bytes
    rounds_done: int
    evaluation: Evaluation
    run_id: str
    contributors: _containers.RepeatedScalarFieldContainer[int]
    schema_json: str
    def __init__(self, settings: _Optional[_Union[Settings, _Mapping]] = ..., manifest_json: _Optional[str] = ..., values: _Optional[bytes] = ..., rounds_done: _Optional[int] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., run_id: _Optional[str] = ..., contributors: _Optional[_Iterable[int]] = ..., schema_json: _Optional[str] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("format", "run_id", "settings", "manifest_digest", "schema_digest", "next_version", "model", "server_state", "torch_rng", "numpy_rng", "evaluations", "worker_num", "min_workers", "contributors")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    NEXT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVER_STATE_FIELD_NUMBER: _ClassVar[int]
    TORCH_RNG_FIELD_NUMBER: _ClassVar[int]
    NUMPY_RNG_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    WORKER_NUM_FIELD_NUMBER: _ClassVar[int]
    MIN_WORKERS_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    format: int
    run_id: str
    settings: Settings
    manifest_digest: str
    schema_digest: str
    next_version: int
    model: bytes
    server_state: bytes
    torch_rng: bytes
    numpy_rng: str
    evaluations: _containers.RepeatedCompositeFieldContainer[Evaluation]
    worker_num: int
    min_workers: int
    contributors: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, format: _Optional[int] = ..., run_id: _Optional[str] = ..., settings: _Optional[_Union[Settings, _Mapping]] = ..., manifest_digest: _Optional[str] = ..., schema_digest: _Optional[str] = ..., next_version: _Optional[int] = ..., model: _Optional[bytes] = ..., server_state: _Optional[bytes] = ..., torch_rng: _Optional[bytes] = ..., numpy_rng: _Optional[str] = ..., evaluations: _Optional[_Iterable[_Union[Evaluation, _Mapping]]] = ..., worker_num: _Optional[int] = ..., min_workers: _Optional[int] = ..., contributors: _Optional[_Iterable[int]] = ...) -> None: ...

class SeatTicket(_message.Message):
    __slots__ = ("run_id", "worker_id", "seat_token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    worker_id: int
    seat_token: bytes
    def __init__(self, run_id: _Optional[str] = ..., worker_id: _Optional[int] = ..., seat_token: _Optional[bytes] = ...) -> None: ...
