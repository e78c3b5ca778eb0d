from lipsync.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PreviewRequest(_message.Message):
    __slots__ = ("source_id",)
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    def __init__(self, source_id: _Optional[str] = ...) -> None: ...

class PrepareOptions(_message.Message):
    __slots__ = ("model_version", "bbox_shift", "extra_margin", "face_index", "smoothing", "face_hint", "parsing_mode", "left_cheek_width", "right_cheek_width")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BBOX_SHIFT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_MARGIN_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    FACE_HINT_FIELD_NUMBER: _ClassVar[int]
    PARSING_MODE_FIELD_NUMBER: _ClassVar[int]
    LEFT_CHEEK_WIDTH_FIELD_NUMBER: _ClassVar[int]
    RIGHT_CHEEK_WIDTH_FIELD_NUMBER: _ClassVar[int]
    model_version: _common_pb2.ModelVersion
    bbox_shift: int
    extra_margin: int
    face_index: int
    smoothing: bool
    face_hint: _common_pb2.FaceBox
    parsing_mode: str
    left_cheek_width: int
    right_cheek_width: int
    def __init__(self, model_version: _Optional[_Union[_common_pb2.ModelVersion, str]] = ..., bbox_shift: _Optional[int] = ..., extra_margin: _Optional[int] = ..., face_index: _Optional[int] = ..., smoothing: bool = ..., face_hint: _Optional[_Union[_common_pb2.FaceBox, _Mapping]] = ..., parsing_mode: _Optional[str] = ..., left_cheek_width: _Optional[int] = ..., right_cheek_width: _Optional[int] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("options", "media_sha256")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_SHA256_FIELD_NUMBER: _ClassVar[int]
    options: PrepareOptions
    media_sha256: str
    def __init__(self, options: _Optional[_Union[PrepareOptions, _Mapping]] = ..., media_sha256: _Optional[str] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("options", "media")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    options: PrepareOptions
    media: _common_pb2.Chunk
    def __init__(self, options: _Optional[_Union[PrepareOptions, _Mapping]] = ..., media: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class PreparedSource(_message.Message):
    __slots__ = ("source_id", "num_frames", "fps", "width", "height", "is_image", "frames_with_face", "bbox_shift_range", "cached")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    IS_IMAGE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_WITH_FACE_FIELD_NUMBER: _ClassVar[int]
    BBOX_SHIFT_RANGE_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    num_frames: int
    fps: float
    width: int
    height: int
    is_image: bool
    frames_with_face: int
    bbox_shift_range: _common_pb2.BboxShiftRange
    cached: bool
    def __init__(self, source_id: _Optional[str] = ..., num_frames: _Optional[int] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., is_image: bool = ..., frames_with_face: _Optional[int] = ..., bbox_shift_range: _Optional[_Union[_common_pb2.BboxShiftRange, _Mapping]] = ..., cached: bool = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("progress", "prepared")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    prepared: PreparedSource
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., prepared: _Optional[_Union[PreparedSource, _Mapping]] = ...) -> None: ...

class CropBatch(_message.Message):
    __slots__ = ("first_frame", "images")
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    first_frame: int
    images: _common_pb2.Tensor
    def __init__(self, first_frame: _Optional[int] = ..., images: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...
