from lipsync.v1 import common_pb2 as _common_pb2
from lipsync.v1 import evaluator_pb2 as _evaluator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
MEDIA_KIND_UNSPECIFIED: MediaKind
MEDIA_KIND_FACE: MediaKind
MEDIA_KIND_AUDIO: MediaKind
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

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
