from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("committed", "pending_activation_sha256", "checkpoints", "resume", "aligned_sha256")
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    PENDING_ACTIVATION_SHA256_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    ALIGNED_SHA256_FIELD_NUMBER: _ClassVar[int]
    committed: int
    pending_activation_sha256: bytes
    checkpoints: _containers.RepeatedScalarFieldContainer[int]
    resume: bool
    aligned_sha256: bytes
    def __init__(self, committed: _Optional[int] = ..., pending_activation_sha256: _Optional[bytes] = ..., checkpoints: _Optional[_Iterable[int]] = ..., resume: _Optional[bool] = ..., aligned_sha256: _Optional[bytes] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("run_id", "start_step", "total_steps", "load_checkpoint")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOAD_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    start_step: int
    total_steps: int
    load_checkpoint: bool
    def __init__(self, run_id: _Optional[str] = ..., start_step: _Optional[int] = ..., total_steps: _Optional[int] = ..., load_checkpoint: _Optional[bool] = ...) -> None: ...

class Start(_message.Message):
    __slots__ = ("step", "batch", "ids_sha256", "durable_step")
    STEP_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    IDS_SHA256_FIELD_NUMBER: _ClassVar[int]
    DURABLE_STEP_FIELD_NUMBER: _ClassVar[int]
    step: int
    batch: int
    ids_sha256: bytes
    durable_step: int
    def __init__(self, step: _Optional[int] = ..., batch: _Optional[int] = ..., ids_sha256: _Optional[bytes] = ..., durable_step: _Optional[int] = ...) -> None: ...

class Activation(_message.Message):
    __slots__ = ("step", "value")
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    step: int
    value: Tensor
    def __init__(self, step: _Optional[int] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Gradient(_message.Message):
    __slots__ = ("step", "value", "checkpoint", "loss")
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    step: int
    value: Tensor
    checkpoint: bool
    loss: float
    def __init__(self, step: _Optional[int] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ..., checkpoint: _Optional[bool] = ..., loss: _Optional[float] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ("step", "checkpointed", "state_sha256")
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTED_FIELD_NUMBER: _ClassVar[int]
    STATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    step: int
    checkpointed: bool
    state_sha256: bytes
    def __init__(self, step: _Optional[int] = ..., checkpointed: _Optional[bool] = ..., state_sha256: _Optional[bytes] = ...) -> None: ...

class Finish(_message.Message):
    __slots__ = ("steps", "final_loss", "manifest_json", "summary")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    steps: int
    final_loss: float
    manifest_json: bytes
    summary: str
    def __init__(self, steps: _Optional[int] = ..., final_loss: _Optional[float] = ..., manifest_json: _Optional[bytes] = ..., summary: _Optional[str] = ...) -> None: ...

class Exported(_message.Message):
    __slots__ = ("half_sha256", "config_sha256", "data_sha256", "policy_sha256", "sealed_path", "leader_measurement")
    HALF_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    POLICY_SHA256_FIELD_NUMBER: _ClassVar[int]
    SEALED_PATH_FIELD_NUMBER: _ClassVar[int]
    LEADER_MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    half_sha256: bytes
    config_sha256: bytes
    data_sha256: bytes
    policy_sha256: bytes
    sealed_path: str
    leader_measurement: str
    def __init__(self, half_sha256: _Optional[bytes] = ..., config_sha256: _Optional[bytes] = ..., data_sha256: _Optional[bytes] = ..., policy_sha256: _Optional[bytes] = ..., sealed_path: _Optional[str] = ..., leader_measurement: _Optional[str] = ...) -> None: ...

class Stop(_message.Message):
    __slots__ = ("reason", "refused")
    REASON_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    reason: str
    refused: bool
    def __init__(self, reason: _Optional[str] = ..., refused: _Optional[bool] = ...) -> None: ...

class LeaderMessage(_message.Message):
    __slots__ = ("welcome", "start", "gradient", "finish", "stop")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    start: Start
    gradient: Gradient
    finish: Finish
    stop: Stop
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., start: _Optional[_Union[Start, _Mapping]] = ..., gradient: _Optional[_Union[Gradient, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ..., stop: _Optional[_Union[Stop, _Mapping]] = ...) -> None: ...

class FollowerMessage(_message.Message):
    __slots__ = ("hello", "activation", "commit", "exported", "stop")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    activation: Activation
    commit: Commit
    exported: Exported
    stop: Stop
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., activation: _Optional[_Union[Activation, _Mapping]] = ..., commit: _Optional[_Union[Commit, _Mapping]] = ..., exported: _Optional[_Union[Exported, _Mapping]] = ..., stop: _Optional[_Union[Stop, _Mapping]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("format", "run_id", "role", "step", "settings_sha256", "aligned_sha256", "manifest_json", "values", "losses")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_SHA256_FIELD_NUMBER: _ClassVar[int]
    ALIGNED_SHA256_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    format: int
    run_id: str
    role: str
    step: int
    settings_sha256: str
    aligned_sha256: bytes
    manifest_json: str
    values: bytes
    losses: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, format: _Optional[int] = ..., run_id: _Optional[str] = ..., role: _Optional[str] = ..., step: _Optional[int] = ..., settings_sha256: _Optional[str] = ..., aligned_sha256: _Optional[bytes] = ..., manifest_json: _Optional[str] = ..., values: _Optional[bytes] = ..., losses: _Optional[_Iterable[float]] = ...) -> None: ...

class ExportedHalf(_message.Message):
    __slots__ = ("format", "role", "settings_json", "manifest_json", "values", "run_id", "data_sha256")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    format: int
    role: str
    settings_json: str
    manifest_json: str
    values: bytes
    run_id: str
    data_sha256: str
    def __init__(self, format: _Optional[int] = ..., role: _Optional[str] = ..., settings_json: _Optional[str] = ..., manifest_json: _Optional[str] = ..., values: _Optional[bytes] = ..., run_id: _Optional[str] = ..., data_sha256: _Optional[str] = ...) -> None: ...
