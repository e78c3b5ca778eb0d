from lipsync.v1 import common_pb2 as _common_pb2
from lipsync.v1 import evaluator_pb2 as _evaluator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LiveOutput(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIVE_OUTPUT_UNSPECIFIED: _ClassVar[LiveOutput]
    LIVE_OUTPUT_H264_AU: _ClassVar[LiveOutput]
    LIVE_OUTPUT_FMP4: _ClassVar[LiveOutput]

class LiveControl(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIVE_CONTROL_UNSPECIFIED: _ClassVar[LiveControl]
    LIVE_CONTROL_FLUSH: _ClassVar[LiveControl]
    LIVE_CONTROL_INTERRUPT: _ClassVar[LiveControl]

class MediaKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_KIND_UNSPECIFIED: _ClassVar[MediaKind]
    MEDIA_KIND_FACE: _ClassVar[MediaKind]
    MEDIA_KIND_AUDIO: _ClassVar[MediaKind]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
LIVE_OUTPUT_UNSPECIFIED: LiveOutput
LIVE_OUTPUT_H264_AU: LiveOutput
LIVE_OUTPUT_FMP4: LiveOutput
LIVE_CONTROL_UNSPECIFIED: LiveControl
LIVE_CONTROL_FLUSH: LiveControl
LIVE_CONTROL_INTERRUPT: LiveControl
MEDIA_KIND_UNSPECIFIED: MediaKind
MEDIA_KIND_FACE: MediaKind
MEDIA_KIND_AUDIO: MediaKind
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class LiveStart(_message.Message):
    __slots__ = ("options", "source_id", "face_size", "sample_rate", "output", "no_idle", "max_buffer_ms")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    NO_IDLE_FIELD_NUMBER: _ClassVar[int]
    MAX_BUFFER_MS_FIELD_NUMBER: _ClassVar[int]
    options: _common_pb2.LipsyncOptions
    source_id: str
    face_size: int
    sample_rate: int
    output: LiveOutput
    no_idle: bool
    max_buffer_ms: int
    def __init__(self, options: _Optional[_Union[_common_pb2.LipsyncOptions, _Mapping]] = ..., source_id: _Optional[str] = ..., face_size: _Optional[int] = ..., sample_rate: _Optional[int] = ..., output: _Optional[_Union[LiveOutput, str]] = ..., no_idle: bool = ..., max_buffer_ms: _Optional[int] = ...) -> None: ...

class LiveRequest(_message.Message):
    __slots__ = ("start", "face", "audio", "control")
    START_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    start: LiveStart
    face: bytes
    audio: bytes
    control: LiveControl
    def __init__(self, start: _Optional[_Union[LiveStart, _Mapping]] = ..., face: _Optional[bytes] = ..., audio: _Optional[bytes] = ..., control: _Optional[_Union[LiveControl, str]] = ...) -> None: ...

class LiveReady(_message.Message):
    __slots__ = ("source_id", "engine", "engine_detail", "fps", "width", "height", "lookahead_frames", "init_segment")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_FRAMES_FIELD_NUMBER: _ClassVar[int]
    INIT_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    engine: str
    engine_detail: str
    fps: float
    width: int
    height: int
    lookahead_frames: int
    init_segment: bytes
    def __init__(self, source_id: _Optional[str] = ..., engine: _Optional[str] = ..., engine_detail: _Optional[str] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., lookahead_frames: _Optional[int] = ..., init_segment: _Optional[bytes] = ...) -> None: ...

class LiveFrame(_message.Message):
    __slots__ = ("index", "pts_s", "speech", "pcm", "audio_s", "data", "keyframe", "latency_ms")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PTS_S_FIELD_NUMBER: _ClassVar[int]
    SPEECH_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    AUDIO_S_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    index: int
    pts_s: float
    speech: bool
    pcm: bytes
    audio_s: float
    data: bytes
    keyframe: bool
    latency_ms: float
    def __init__(self, index: _Optional[int] = ..., pts_s: _Optional[float] = ..., speech: bool = ..., pcm: _Optional[bytes] = ..., audio_s: _Optional[float] = ..., data: _Optional[bytes] = ..., keyframe: bool = ..., latency_ms: _Optional[float] = ...) -> None: ...

class LiveStats(_message.Message):
    __slots__ = ("frames", "speech_frames", "idle_frames", "frames_late", "latency_p50_ms", "latency_p95_ms", "buffered_ms", "engine_detail")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SPEECH_FRAMES_FIELD_NUMBER: _ClassVar[int]
    IDLE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_LATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_MS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    frames: int
    speech_frames: int
    idle_frames: int
    frames_late: int
    latency_p50_ms: float
    latency_p95_ms: float
    buffered_ms: float
    engine_detail: str
    def __init__(self, frames: _Optional[int] = ..., speech_frames: _Optional[int] = ..., idle_frames: _Optional[int] = ..., frames_late: _Optional[int] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., buffered_ms: _Optional[float] = ..., engine_detail: _Optional[str] = ...) -> None: ...

class LiveResponse(_message.Message):
    __slots__ = ("ready", "frame", "stats", "ending")
    READY_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ENDING_FIELD_NUMBER: _ClassVar[int]
    ready: LiveReady
    frame: LiveFrame
    stats: LiveStats
    ending: LiveEnding
    def __init__(self, ready: _Optional[_Union[LiveReady, _Mapping]] = ..., frame: _Optional[_Union[LiveFrame, _Mapping]] = ..., stats: _Optional[_Union[LiveStats, _Mapping]] = ..., ending: _Optional[_Union[LiveEnding, _Mapping]] = ...) -> None: ...

class LiveEnding(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class MediaChunk(_message.Message):
    __slots__ = ("kind", "chunk")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    kind: MediaKind
    chunk: _common_pb2.Chunk
    def __init__(self, kind: _Optional[_Union[MediaKind, str]] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class LipsyncRequest(_message.Message):
    __slots__ = ("options", "media")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    options: _common_pb2.LipsyncOptions
    media: MediaChunk
    def __init__(self, options: _Optional[_Union[_common_pb2.LipsyncOptions, _Mapping]] = ..., media: _Optional[_Union[MediaChunk, _Mapping]] = ...) -> None: ...

class LipsyncResponse(_message.Message):
    __slots__ = ("progress", "video", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    video: _common_pb2.Chunk
    summary: _common_pb2.Summary
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., video: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ..., summary: _Optional[_Union[_common_pb2.Summary, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "progress", "error", "error_code", "summary", "created_unix", "finished_unix", "options")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    progress: _common_pb2.Progress
    error: str
    error_code: str
    summary: _common_pb2.Summary
    created_unix: float
    finished_unix: float
    options: _common_pb2.LipsyncOptions
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ..., summary: _Optional[_Union[_common_pb2.Summary, _Mapping]] = ..., created_unix: _Optional[float] = ..., finished_unix: _Optional[float] = ..., options: _Optional[_Union[_common_pb2.LipsyncOptions, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DownloadResultRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DownloadResultResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: _common_pb2.Chunk
    def __init__(self, chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class BatchChunk(_message.Message):
    __slots__ = ("item", "kind", "chunk")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    item: int
    kind: MediaKind
    chunk: _common_pb2.Chunk
    def __init__(self, item: _Optional[int] = ..., kind: _Optional[_Union[MediaKind, str]] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("options", "media")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    options: _common_pb2.LipsyncOptions
    media: BatchChunk
    def __init__(self, options: _Optional[_Union[_common_pb2.LipsyncOptions, _Mapping]] = ..., media: _Optional[_Union[BatchChunk, _Mapping]] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("item", "job", "error", "error_code")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    item: int
    job: Job
    error: str
    error_code: str
    def __init__(self, item: _Optional[int] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ...) -> None: ...
