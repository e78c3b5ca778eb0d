from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    DATA_TYPE_UINT8: _ClassVar[DataType]
    DATA_TYPE_INT16: _ClassVar[DataType]
    DATA_TYPE_INT32: _ClassVar[DataType]
    DATA_TYPE_FLOAT32: _ClassVar[DataType]
    DATA_TYPE_FLOAT16: _ClassVar[DataType]
    DATA_TYPE_INT64: _ClassVar[DataType]

class ModelVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_VERSION_UNSPECIFIED: _ClassVar[ModelVersion]
    MODEL_VERSION_V1: _ClassVar[ModelVersion]
    MODEL_VERSION_V15: _ClassVar[ModelVersion]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_INTERACTIVE: _ClassVar[Priority]
    PRIORITY_BATCH: _ClassVar[Priority]

class VideoCodec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_CODEC_UNSPECIFIED: _ClassVar[VideoCodec]
    VIDEO_CODEC_H264: _ClassVar[VideoCodec]
    VIDEO_CODEC_H264_LOSSLESS_RGB: _ClassVar[VideoCodec]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_UPLOAD: _ClassVar[Stage]
    STAGE_AUDIO: _ClassVar[Stage]
    STAGE_PREPROCESS: _ClassVar[Stage]
    STAGE_GENERATE: _ClassVar[Stage]
    STAGE_RENDER: _ClassVar[Stage]
    STAGE_DONE: _ClassVar[Stage]
DATA_TYPE_UNSPECIFIED: DataType
DATA_TYPE_UINT8: DataType
DATA_TYPE_INT16: DataType
DATA_TYPE_INT32: DataType
DATA_TYPE_FLOAT32: DataType
DATA_TYPE_FLOAT16: DataType
DATA_TYPE_INT64: DataType
MODEL_VERSION_UNSPECIFIED: ModelVersion
MODEL_VERSION_V1: ModelVersion
MODEL_VERSION_V15: ModelVersion
PRIORITY_UNSPECIFIED: Priority
PRIORITY_INTERACTIVE: Priority
PRIORITY_BATCH: Priority
VIDEO_CODEC_UNSPECIFIED: VideoCodec
VIDEO_CODEC_H264: VideoCodec
VIDEO_CODEC_H264_LOSSLESS_RGB: VideoCodec
STAGE_UNSPECIFIED: Stage
STAGE_UPLOAD: Stage
STAGE_AUDIO: Stage
STAGE_PREPROCESS: Stage
STAGE_GENERATE: Stage
STAGE_RENDER: Stage
STAGE_DONE: Stage

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("offset", "data", "last")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    last: bool
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., last: bool = ...) -> None: ...

class LipsyncOptions(_message.Message):
    __slots__ = ("engine", "model_version", "bbox_shift", "extra_margin", "fps", "codec", "crf", "face_index", "smoothing", "face_hint", "color_match", "evaluate", "face_url", "audio_url", "priority", "parsing_mode", "left_cheek_width", "right_cheek_width")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BBOX_SHIFT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_MARGIN_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CRF_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    FACE_HINT_FIELD_NUMBER: _ClassVar[int]
    COLOR_MATCH_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_FIELD_NUMBER: _ClassVar[int]
    FACE_URL_FIELD_NUMBER: _ClassVar[int]
    AUDIO_URL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PARSING_MODE_FIELD_NUMBER: _ClassVar[int]
    LEFT_CHEEK_WIDTH_FIELD_NUMBER: _ClassVar[int]
    RIGHT_CHEEK_WIDTH_FIELD_NUMBER: _ClassVar[int]
    engine: str
    model_version: ModelVersion
    bbox_shift: int
    extra_margin: int
    fps: float
    codec: VideoCodec
    crf: int
    face_index: int
    smoothing: bool
    face_hint: FaceBox
    color_match: bool
    evaluate: bool
    face_url: str
    audio_url: str
    priority: Priority
    parsing_mode: str
    left_cheek_width: int
    right_cheek_width: int
    def __init__(self, engine: _Optional[str] = ..., model_version: _Optional[_Union[ModelVersion, str]] = ..., bbox_shift: _Optional[int] = ..., extra_margin: _Optional[int] = ..., fps: _Optional[float] = ..., codec: _Optional[_Union[VideoCodec, str]] = ..., crf: _Optional[int] = ..., face_index: _Optional[int] = ..., smoothing: bool = ..., face_hint: _Optional[_Union[FaceBox, _Mapping]] = ..., color_match: bool = ..., evaluate: bool = ..., face_url: _Optional[str] = ..., audio_url: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., parsing_mode: _Optional[str] = ..., left_cheek_width: _Optional[int] = ..., right_cheek_width: _Optional[int] = ...) -> None: ...

class FaceBox(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "done", "total")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    done: int
    total: int
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    seconds: float
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., seconds: _Optional[float] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("frames", "duration_s", "fps", "width", "height", "engine", "engine_description", "timings", "output_bytes", "source_frames", "frames_without_face", "evaluation", "engine_detail")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_WITHOUT_FACE_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    frames: int
    duration_s: float
    fps: float
    width: int
    height: int
    engine: str
    engine_description: str
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    output_bytes: int
    source_frames: int
    frames_without_face: int
    evaluation: EvaluationResult
    engine_detail: str
    def __init__(self, frames: _Optional[int] = ..., duration_s: _Optional[float] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., engine: _Optional[str] = ..., engine_description: _Optional[str] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., output_bytes: _Optional[int] = ..., source_frames: _Optional[int] = ..., frames_without_face: _Optional[int] = ..., evaluation: _Optional[_Union[EvaluationResult, _Mapping]] = ..., engine_detail: _Optional[str] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("name", "value", "better", "unavailable", "note")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BETTER_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    better: str
    unavailable: str
    note: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., better: _Optional[str] = ..., unavailable: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class EvaluationResult(_message.Message):
    __slots__ = ("metrics", "json", "report_html")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    REPORT_HTML_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    json: str
    report_html: bytes
    def __init__(self, metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ..., json: _Optional[str] = ..., report_html: _Optional[bytes] = ...) -> None: ...

class BboxShiftRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class PreviewResult(_message.Message):
    __slots__ = ("png", "frame", "crop_box", "bbox_shift_range", "source_id", "cached")
    PNG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    CROP_BOX_FIELD_NUMBER: _ClassVar[int]
    BBOX_SHIFT_RANGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    frame: int
    crop_box: FaceBox
    bbox_shift_range: BboxShiftRange
    source_id: str
    cached: bool
    def __init__(self, png: _Optional[bytes] = ..., frame: _Optional[int] = ..., crop_box: _Optional[_Union[FaceBox, _Mapping]] = ..., bbox_shift_range: _Optional[_Union[BboxShiftRange, _Mapping]] = ..., source_id: _Optional[str] = ..., cached: bool = ...) -> None: ...
