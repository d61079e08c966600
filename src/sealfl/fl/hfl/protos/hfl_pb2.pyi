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
    __slots__ = ("state", "version", "reason", "evaluation", "model_path", "release_path", "deadline_in_s", "secagg")
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
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    state: GlobalHeader.State
    version: int
    reason: str
    evaluation: Evaluation
    model_path: str
    release_path: str
    deadline_in_s: float
    secagg: SecAggRound
    def __init__(self, state: _Optional[_Union[GlobalHeader.State, str]] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., model_path: _Optional[str] = ..., release_path: _Optional[str] = ..., deadline_in_s: _Optional[float] = ..., secagg: _Optional[_Union[SecAggRound, _Mapping]] = ...) -> None: ...

class GlobalMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: GlobalHeader
    chunk: _tensor_pb2.TensorChunk
    def __init__(self, header: _Optional[_Union[GlobalHeader, _Mapping]] = ..., chunk: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ...) -> None: ...

class UpdateHeader(_message.Message):
    __slots__ = ("worker_id", "version", "seat_token", "num_examples", "train_loss", "train_seconds", "manifest_digest", "secagg_tag")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SECAGG_TAG_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    version: int
    seat_token: bytes
    num_examples: int
    train_loss: float
    train_seconds: float
    manifest_digest: str
    secagg_tag: SecAggTag
    def __init__(self, worker_id: _Optional[int] = ..., version: _Optional[int] = ..., seat_token: _Optional[bytes] = ..., num_examples: _Optional[int] = ..., train_loss: _Optional[float] = ..., train_seconds: _Optional[float] = ..., manifest_digest: _Optional[str] = ..., secagg_tag: _Optional[_Union[SecAggTag, _Mapping]] = ...) -> None: ...

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

class SecAggTag(_message.Message):
    __slots__ = ("session", "round", "attempt")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    round: int
    attempt: int
    def __init__(self, session: _Optional[bytes] = ..., round: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class SecAggParams(_message.Message):
    __slots__ = ("workers", "threshold", "numel", "clip", "degree")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NUMEL_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedScalarFieldContainer[int]
    threshold: int
    numel: int
    clip: float
    degree: int
    def __init__(self, workers: _Optional[_Iterable[int]] = ..., threshold: _Optional[int] = ..., numel: _Optional[int] = ..., clip: _Optional[float] = ..., degree: _Optional[int] = ...) -> None: ...

class SecAggRound(_message.Message):
    __slots__ = ("tag", "params")
    TAG_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    tag: SecAggTag
    params: SecAggParams
    def __init__(self, tag: _Optional[_Union[SecAggTag, _Mapping]] = ..., params: _Optional[_Union[SecAggParams, _Mapping]] = ...) -> None: ...

class SecAggAdvert(_message.Message):
    __slots__ = ("worker_id", "mask_public", "cipher_public", "weight", "identity")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MASK_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    CIPHER_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    mask_public: bytes
    cipher_public: bytes
    weight: int
    identity: str
    def __init__(self, worker_id: _Optional[int] = ..., mask_public: _Optional[bytes] = ..., cipher_public: _Optional[bytes] = ..., weight: _Optional[int] = ..., identity: _Optional[str] = ...) -> None: ...

class SecAggPeerBytes(_message.Message):
    __slots__ = ("peer", "value")
    PEER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    peer: int
    value: bytes
    def __init__(self, peer: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class SecAggList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SecAggPeerBytes]
    def __init__(self, items: _Optional[_Iterable[_Union[SecAggPeerBytes, _Mapping]]] = ...) -> None: ...

class SecAggUnmaskRequest(_message.Message):
    __slots__ = ("survivors", "dropped")
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    survivors: _containers.RepeatedScalarFieldContainer[int]
    dropped: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, survivors: _Optional[_Iterable[int]] = ..., dropped: _Optional[_Iterable[int]] = ...) -> None: ...

class SecAggAnswer(_message.Message):
    __slots__ = ("seed_shares", "key_shares")
    SEED_SHARES_FIELD_NUMBER: _ClassVar[int]
    KEY_SHARES_FIELD_NUMBER: _ClassVar[int]
    seed_shares: _containers.RepeatedCompositeFieldContainer[SecAggPeerBytes]
    key_shares: _containers.RepeatedCompositeFieldContainer[SecAggPeerBytes]
    def __init__(self, seed_shares: _Optional[_Iterable[_Union[SecAggPeerBytes, _Mapping]]] = ..., key_shares: _Optional[_Iterable[_Union[SecAggPeerBytes, _Mapping]]] = ...) -> None: ...

class SecAggPoll(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SecAggRequest(_message.Message):
    __slots__ = ("worker_id", "seat_token", "tag", "advert", "bundle", "unmask", "confirm", "answer")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SEAT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    ADVERT_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    UNMASK_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    seat_token: bytes
    tag: SecAggTag
    advert: SecAggAdvert
    bundle: SecAggList
    unmask: SecAggPoll
    confirm: SecAggList
    answer: SecAggAnswer
    def __init__(self, worker_id: _Optional[int] = ..., seat_token: _Optional[bytes] = ..., tag: _Optional[_Union[SecAggTag, _Mapping]] = ..., advert: _Optional[_Union[SecAggAdvert, _Mapping]] = ..., bundle: _Optional[_Union[SecAggList, _Mapping]] = ..., unmask: _Optional[_Union[SecAggPoll, _Mapping]] = ..., confirm: _Optional[_Union[SecAggList, _Mapping]] = ..., answer: _Optional[_Union[SecAggAnswer, _Mapping]] = ...) -> None: ...

class SecAggReply(_message.Message):
    __slots__ = ("status", "reason", "roster", "delivery", "unmask_request", "confirmations")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[SecAggReply.Status]
        OK: _ClassVar[SecAggReply.Status]
        WAITING: _ClassVar[SecAggReply.Status]
        REFUSED: _ClassVar[SecAggReply.Status]
        STOPPED: _ClassVar[SecAggReply.Status]
    STATUS_UNSPECIFIED: SecAggReply.Status
    OK: SecAggReply.Status
    WAITING: SecAggReply.Status
    REFUSED: SecAggReply.Status
    STOPPED: SecAggReply.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    UNMASK_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    status: SecAggReply.Status
    reason: str
    roster: _containers.RepeatedCompositeFieldContainer[SecAggAdvert]
    delivery: SecAggList
    unmask_request: SecAggUnmaskRequest
    confirmations: SecAggList
    def __init__(self, status: _Optional[_Union[SecAggReply.Status, str]] = ..., reason: _Optional[str] = ..., roster: _Optional[_Iterable[_Union[SecAggAdvert, _Mapping]]] = ..., delivery: _Optional[_Union[SecAggList, _Mapping]] = ..., unmask_request: _Optional[_Union[SecAggUnmaskRequest, _Mapping]] = ..., confirmations: _Optional[_Union[SecAggList, _Mapping]] = ...) -> None: ...

class SecAggCheckpoint(_message.Message):
    __slots__ = ("run_id", "version", "aggregator", "adverts", "confirmations", "confirmations_closed", "train_loss", "train_seconds")
    class ConfirmationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: SecAggList
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[SecAggList, _Mapping]] = ...) -> None: ...
    class TrainLossEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    class TrainSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FIELD_NUMBER: _ClassVar[int]
    ADVERTS_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_CLOSED_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    version: int
    aggregator: bytes
    adverts: _containers.RepeatedCompositeFieldContainer[SecAggAdvert]
    confirmations: _containers.MessageMap[int, SecAggList]
    confirmations_closed: bool
    train_loss: _containers.ScalarMap[int, float]
    train_seconds: _containers.ScalarMap[int, float]
    def __init__(self, run_id: _Optional[str] = ..., version: _Optional[int] = ..., aggregator: _Optional[bytes] = ..., adverts: _Optional[_Iterable[_Union[SecAggAdvert, _Mapping]]] = ..., confirmations: _Optional[_Mapping[int, SecAggList]] = ..., confirmations_closed: _Optional[bool] = ..., train_loss: _Optional[_Mapping[int, float]] = ..., train_seconds: _Optional[_Mapping[int, float]] = ...) -> None: ...
