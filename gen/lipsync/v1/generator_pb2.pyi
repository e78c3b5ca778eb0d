from lipsync.v1 import common_pb2 as _common_pb2
from lipsync.v1 import preprocess_pb2 as _preprocess_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LiveAudioFrame(_message.Message):
    __slots__ = ("index", "audio")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    index: int
    audio: _common_pb2.Tensor
    def __init__(self, index: _Optional[int] = ..., audio: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class LiveGenerateRequest(_message.Message):
    __slots__ = ("config", "frame", "flush")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    config: GenerateConfig
    frame: LiveAudioFrame
    flush: bool
    def __init__(self, config: _Optional[_Union[GenerateConfig, _Mapping]] = ..., frame: _Optional[_Union[LiveAudioFrame, _Mapping]] = ..., flush: bool = ...) -> None: ...

class LiveGenerateReady(_message.Message):
    __slots__ = ("engine", "engine_detail", "lookahead_frames")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_FRAMES_FIELD_NUMBER: _ClassVar[int]
    engine: str
    engine_detail: str
    lookahead_frames: int
    def __init__(self, engine: _Optional[str] = ..., engine_detail: _Optional[str] = ..., lookahead_frames: _Optional[int] = ...) -> None: ...

class LiveGenerateResponse(_message.Message):
    __slots__ = ("ready", "crops")
    READY_FIELD_NUMBER: _ClassVar[int]
    CROPS_FIELD_NUMBER: _ClassVar[int]
    ready: LiveGenerateReady
    crops: _preprocess_pb2.CropBatch
    def __init__(self, ready: _Optional[_Union[LiveGenerateReady, _Mapping]] = ..., crops: _Optional[_Union[_preprocess_pb2.CropBatch, _Mapping]] = ...) -> None: ...

class GenerateConfig(_message.Message):
    __slots__ = ("source_id", "engine", "model_version", "fps", "audio_sample_rate", "priority", "num_frames")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    engine: str
    model_version: _common_pb2.ModelVersion
    fps: float
    audio_sample_rate: int
    priority: _common_pb2.Priority
    num_frames: int
    def __init__(self, source_id: _Optional[str] = ..., engine: _Optional[str] = ..., model_version: _Optional[_Union[_common_pb2.ModelVersion, str]] = ..., fps: _Optional[float] = ..., audio_sample_rate: _Optional[int] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., num_frames: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: GenerateConfig
    audio: _common_pb2.Tensor
    def __init__(self, config: _Optional[_Union[GenerateConfig, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class GenerateSummary(_message.Message):
    __slots__ = ("frames", "engine", "engine_description", "engine_detail")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    frames: int
    engine: str
    engine_description: str
    engine_detail: str
    def __init__(self, frames: _Optional[int] = ..., engine: _Optional[str] = ..., engine_description: _Optional[str] = ..., engine_detail: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("crops", "summary")
    CROPS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    crops: _preprocess_pb2.CropBatch
    summary: GenerateSummary
    def __init__(self, crops: _Optional[_Union[_preprocess_pb2.CropBatch, _Mapping]] = ..., summary: _Optional[_Union[GenerateSummary, _Mapping]] = ...) -> None: ...

class ListEnginesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EngineInfo(_message.Message):
    __slots__ = ("name", "description", "available", "unavailable_reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    available: bool
    unavailable_reason: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., available: bool = ..., unavailable_reason: _Optional[str] = ...) -> None: ...

class ListEnginesResponse(_message.Message):
    __slots__ = ("engines",)
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    engines: _containers.RepeatedCompositeFieldContainer[EngineInfo]
    def __init__(self, engines: _Optional[_Iterable[_Union[EngineInfo, _Mapping]]] = ...) -> None: ...
