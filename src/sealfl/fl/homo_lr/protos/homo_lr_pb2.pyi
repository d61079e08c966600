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
    __slots__ = ("worker_id", "settings", "n_samples")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    settings: TrainingSettings
    n_samples: int
    def __init__(self, worker_id: _Optional[int] = ..., settings: _Optional[_Union[TrainingSettings, _Mapping]] = ..., n_samples: _Optional[int] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("public_key", "worker_num", "round_deadline_s", "session_id", "refused")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    WORKER_NUM_FIELD_NUMBER: _ClassVar[int]
    ROUND_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    worker_num: int
    round_deadline_s: float
    session_id: str
    refused: str
    def __init__(self, public_key: _Optional[bytes] = ..., worker_num: _Optional[int] = ..., round_deadline_s: _Optional[float] = ..., session_id: _Optional[str] = ..., refused: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("worker_id", "iteration", "encrypted_weights")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    iteration: int
    encrypted_weights: bytes
    def __init__(self, worker_id: _Optional[int] = ..., iteration: _Optional[int] = ..., encrypted_weights: _Optional[bytes] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("status", "reason")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[SubmitReply.Status]
        ACCEPTED: _ClassVar[SubmitReply.Status]
        REFUSED: _ClassVar[SubmitReply.Status]
    STATUS_UNSPECIFIED: SubmitReply.Status
    ACCEPTED: SubmitReply.Status
    REFUSED: SubmitReply.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    status: SubmitReply.Status
    reason: str
    def __init__(self, status: _Optional[_Union[SubmitReply.Status, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("worker_id", "version")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    version: int
    def __init__(self, worker_id: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("state", "version", "encrypted_weights", "evaluation", "reason", "missing_workers", "sealed_model_path")
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
    state: ModelReply.State
    version: int
    encrypted_weights: bytes
    evaluation: Evaluation
    reason: str
    missing_workers: _containers.RepeatedScalarFieldContainer[int]
    sealed_model_path: str
    def __init__(self, state: _Optional[_Union[ModelReply.State, str]] = ..., version: _Optional[int] = ..., encrypted_weights: _Optional[bytes] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., reason: _Optional[str] = ..., missing_workers: _Optional[_Iterable[int]] = ..., sealed_model_path: _Optional[str] = ...) -> None: ...

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
