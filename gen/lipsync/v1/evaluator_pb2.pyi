from lipsync.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvaluateConfig(_message.Message):
    __slots__ = ("report_html",)
    REPORT_HTML_FIELD_NUMBER: _ClassVar[int]
    report_html: bool
    def __init__(self, report_html: bool = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("role", "chunk")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    role: str
    chunk: _common_pb2.Chunk
    def __init__(self, role: _Optional[str] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("config", "file")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    config: EvaluateConfig
    file: FileChunk
    def __init__(self, config: _Optional[_Union[EvaluateConfig, _Mapping]] = ..., file: _Optional[_Union[FileChunk, _Mapping]] = ...) -> None: ...

class ModelValue(_message.Message):
    __slots__ = ("model", "value", "improvement")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    value: float
    improvement: float
    def __init__(self, model: _Optional[str] = ..., value: _Optional[float] = ..., improvement: _Optional[float] = ...) -> None: ...

class MetricComparison(_message.Message):
    __slots__ = ("name", "better", "winner", "values", "unavailable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BETTER_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    better: str
    winner: str
    values: _containers.RepeatedCompositeFieldContainer[ModelValue]
    unavailable: str
    def __init__(self, name: _Optional[str] = ..., better: _Optional[str] = ..., winner: _Optional[str] = ..., values: _Optional[_Iterable[_Union[ModelValue, _Mapping]]] = ..., unavailable: _Optional[str] = ...) -> None: ...

class CompareResult(_message.Message):
    __slots__ = ("metrics", "json", "report_html")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    REPORT_HTML_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricComparison]
    json: str
    report_html: bytes
    def __init__(self, metrics: _Optional[_Iterable[_Union[MetricComparison, _Mapping]]] = ..., json: _Optional[str] = ..., report_html: _Optional[bytes] = ...) -> None: ...
