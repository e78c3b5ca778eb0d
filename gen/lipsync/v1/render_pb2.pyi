from lipsync.v1 import common_pb2 as _common_pb2
from lipsync.v1 import preprocess_pb2 as _preprocess_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LiveRenderConfig(_message.Message):
    __slots__ = ("source_id", "fps", "fmp4", "crf")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FMP4_FIELD_NUMBER: _ClassVar[int]
    CRF_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    fps: float
    fmp4: bool
    crf: int
    def __init__(self, source_id: _Optional[str] = ..., fps: _Optional[float] = ..., fmp4: bool = ..., crf: _Optional[int] = ...) -> None: ...

class LiveRenderFrame(_message.Message):
    __slots__ = ("index", "crop")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    index: int
    crop: bytes
    def __init__(self, index: _Optional[int] = ..., crop: _Optional[bytes] = ...) -> None: ...

class LiveRenderRequest(_message.Message):
    __slots__ = ("config", "frame")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    config: LiveRenderConfig
    frame: LiveRenderFrame
    def __init__(self, config: _Optional[_Union[LiveRenderConfig, _Mapping]] = ..., frame: _Optional[_Union[LiveRenderFrame, _Mapping]] = ...) -> None: ...

class LiveEncoded(_message.Message):
    __slots__ = ("index", "data", "keyframe")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_FIELD_NUMBER: _ClassVar[int]
    index: int
    data: bytes
    keyframe: bool
    def __init__(self, index: _Optional[int] = ..., data: _Optional[bytes] = ..., keyframe: bool = ...) -> None: ...

class LiveRenderInit(_message.Message):
    __slots__ = ("width", "height", "init_segment")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INIT_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    init_segment: bytes
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., init_segment: _Optional[bytes] = ...) -> None: ...

class LiveRenderResponse(_message.Message):
    __slots__ = ("init", "frame")
    INIT_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    init: LiveRenderInit
    frame: LiveEncoded
    def __init__(self, init: _Optional[_Union[LiveRenderInit, _Mapping]] = ..., frame: _Optional[_Union[LiveEncoded, _Mapping]] = ...) -> None: ...

class RenderConfig(_message.Message):
    __slots__ = ("source_id", "fps", "num_frames", "codec", "crf", "audio_sample_rate", "audio_channels", "color_match")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CRF_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    COLOR_MATCH_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    fps: float
    num_frames: int
    codec: _common_pb2.VideoCodec
    crf: int
    audio_sample_rate: int
    audio_channels: int
    color_match: bool
    def __init__(self, source_id: _Optional[str] = ..., fps: _Optional[float] = ..., num_frames: _Optional[int] = ..., codec: _Optional[_Union[_common_pb2.VideoCodec, str]] = ..., crf: _Optional[int] = ..., audio_sample_rate: _Optional[int] = ..., audio_channels: _Optional[int] = ..., color_match: bool = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("config", "audio", "crops")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    CROPS_FIELD_NUMBER: _ClassVar[int]
    config: RenderConfig
    audio: _common_pb2.Tensor
    crops: _preprocess_pb2.CropBatch
    def __init__(self, config: _Optional[_Union[RenderConfig, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., crops: _Optional[_Union[_preprocess_pb2.CropBatch, _Mapping]] = ...) -> None: ...

class RenderSummary(_message.Message):
    __slots__ = ("frames", "width", "height", "bytes", "duration_s")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    frames: int
    width: int
    height: int
    bytes: int
    duration_s: float
    def __init__(self, frames: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., bytes: _Optional[int] = ..., duration_s: _Optional[float] = ...) -> None: ...

class RenderResponse(_message.Message):
    __slots__ = ("video", "progress", "summary")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    video: _common_pb2.Chunk
    progress: _common_pb2.Progress
    summary: RenderSummary
    def __init__(self, video: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., summary: _Optional[_Union[RenderSummary, _Mapping]] = ...) -> None: ...
