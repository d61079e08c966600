from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingSettings(_message.Message):
    __slots__ = ("learning_rate", "alpha", "iterations", "schedule", "n_features")
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    N_FEATURES_FIELD_NUMBER: _ClassVar[int]
    learning_rate: float
    alpha: float
    iterations: int
    schedule: str
    n_features: int
    def __init__(self, learning_rate: _Optional[float] = ..., alpha: _Optional[float] = ..., iterations: _Optional[int] = ..., schedule: _Optional[str] = ..., n_features: _Optional[int] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("worker_id", "settings", "n_samples", "feature_names", "seat_token")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    settings: TrainingSettings
    n_samples: int
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    seat_token: bytes
    def __init__(self, worker_id: _Optional[int] = ..., settings: _Optional[_Union[TrainingSettings, _Mapping]] = ..., n_samples: _Optional[int] = ..., feature_names: _Optional[_Iterable[str]] = ..., seat_token: _Optional[bytes] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("public_key", "worker_num", "round_deadline_s", "session_id", "refused", "next_iteration", "seat_token", "settings")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    WORKER_NUM_FIELD_NUMBER: _ClassVar[int]
    ROUND_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_ITERATION_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    worker_num: int
    round_deadline_s: float
    session_id: str
    refused: str
    next_iteration: int
    seat_token: bytes
    settings: TrainingSettings
    def __init__(self, public_key: _Optional[bytes] = ..., worker_num: _Optional[int] = ..., round_deadline_s: _Optional[float] = ..., session_id: _Optional[str] = ..., refused: _Optional[str] = ..., next_iteration: _Optional[int] = ..., seat_token: _Optional[bytes] = ..., settings: _Optional[_Union[TrainingSettings, _Mapping]] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("worker_id", "iteration", "encrypted_weights", "seat_token")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    iteration: int
    encrypted_weights: bytes
    seat_token: bytes
    def __init__(self, worker_id: _Optional[int] = ..., iteration: _Optional[int] = ..., encrypted_weights: _Optional[bytes] = ..., seat_token: _Optional[bytes] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("status", "reason")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[SubmitReply.Status]
        ACCEPTED: _ClassVar[SubmitReply.Status]
        REFUSED: _ClassVar[SubmitReply.Status]
        DROPPED: _ClassVar[SubmitReply.Status]
        STOPPED: _ClassVar[SubmitReply.Status]
    STATUS_UNSPECIFIED: SubmitReply.Status
    ACCEPTED: SubmitReply.Status
    REFUSED: SubmitReply.Status
    DROPPED: SubmitReply.Status
    STOPPED: SubmitReply.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    status: SubmitReply.Status
    reason: str
    def __init__(self, status: _Optional[_Union[SubmitReply.Status, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("worker_id", "version", "seat_token")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    version: int
    seat_token: bytes
    def __init__(self, worker_id: _Optional[int] = ..., version: _Optional[int] = ..., seat_token: _Optional[bytes] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("iteration", "accuracy", "loss")
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    iteration: int
    accuracy: float
    loss: float
    def __init__(self, iteration: _Optional[int] = ..., accuracy: _Optional[float] = ..., loss: _Optional[float] = ...) -> None: ...

class ModelReply(_message.Message):
    __slots__ = ("state", "version", "encrypted_weights", "evaluation", "reason", "missing_workers", "sealed_model_path", "model_note")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[ModelReply.State]
        READY: _ClassVar[ModelReply.State]
        WAITING: _ClassVar[ModelReply.State]
        ABORTED: _ClassVar[ModelReply.State]
    STATE_UNSPECIFIED: ModelReply.State
    READY: ModelReply.State
    WAITING: ModelReply.State
    ABORTED: ModelReply.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MISSING_WORKERS_FIELD_NUMBER: _ClassVar[int]
    SEALED_MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    MODEL_NOTE_FIELD_NUMBER: _ClassVar[int]
    state: ModelReply.State
    version: int
    encrypted_weights: bytes
    evaluation: Evaluation
    reason: str
    missing_workers: _containers.RepeatedScalarFieldContainer[int]
    sealed_model_path: str
    model_note: str
    def __init__(self, state: _Optional[_Union[ModelReply.State, str]] = ..., version: _Optional[int] = ..., encrypted_weights: _Optional[bytes] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., reason: _Optional[str] = ..., missing_workers: _Optional[_Iterable[int]] = ..., sealed_model_path: _Optional[str] = ..., model_note: _Optional[str] = ...) -> None: ...

class TrainedModel(_message.Message):
    __slots__ = ("weights", "feature_names", "settings", "iterations_done", "evaluation", "session_id", "contributors")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_DONE_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.RepeatedScalarFieldContainer[float]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    settings: TrainingSettings
    iterations_done: int
    evaluation: Evaluation
    session_id: str
    contributors: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, weights: _Optional[_Iterable[float]] = ..., feature_names: _Optional[_Iterable[str]] = ..., settings: _Optional[_Union[TrainingSettings, _Mapping]] = ..., iterations_done: _Optional[int] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., session_id: _Optional[str] = ..., contributors: _Optional[_Iterable[int]] = ...) -> None: ...

class SeatTicket(_message.Message):
    __slots__ = ("session_id", "worker_id", "seat_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    worker_id: int
    seat_token: bytes
    def __init__(self, session_id: _Optional[str] = ..., worker_id: _Optional[int] = ..., seat_token: _Optional[bytes] = ...) -> None: ...

class CheckpointSeat(_message.Message):
    __slots__ = ("worker_id", "fingerprint", "seat_token", "n_samples", "dropped")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    fingerprint: str
    seat_token: bytes
    n_samples: int
    dropped: bool
    def __init__(self, worker_id: _Optional[int] = ..., fingerprint: _Optional[str] = ..., seat_token: _Optional[bytes] = ..., n_samples: _Optional[int] = ..., dropped: _Optional[bool] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("format", "session_id", "settings", "feature_names", "worker_num", "min_workers", "next_iteration", "weights", "seats", "last_evaluation", "paillier_private_key", "contributors")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    WORKER_NUM_FIELD_NUMBER: _ClassVar[int]
    MIN_WORKERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ITERATION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SEATS_FIELD_NUMBER: _ClassVar[int]
    LAST_EVALUATION_FIELD_NUMBER: _ClassVar[int]
    PAILLIER_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    format: int
    session_id: str
    settings: TrainingSettings
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    worker_num: int
    min_workers: int
    next_iteration: int
    weights: _containers.RepeatedScalarFieldContainer[float]
    seats: _containers.RepeatedCompositeFieldContainer[CheckpointSeat]
    last_evaluation: Evaluation
    paillier_private_key: bytes
    contributors: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, format: _Optional[int] = ..., session_id: _Optional[str] = ..., settings: _Optional[_Union[TrainingSettings, _Mapping]] = ..., feature_names: _Optional[_Iterable[str]] = ..., worker_num: _Optional[int] = ..., min_workers: _Optional[int] = ..., next_iteration: _Optional[int] = ..., weights: _Optional[_Iterable[float]] = ..., seats: _Optional[_Iterable[_Union[CheckpointSeat, _Mapping]]] = ..., last_evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., paillier_private_key: _Optional[bytes] = ..., contributors: _Optional[_Iterable[int]] = ...) -> None: ...
