from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_UNSPECIFIED: _ClassVar[Kind]
    HELLO: _ClassVar[Kind]
    REPORT: _ClassVar[Kind]
    ACK: _ClassVar[Kind]
    HEARTBEAT: _ClassVar[Kind]
    REQUEST: _ClassVar[Kind]
    RESPONSE: _ClassVar[Kind]
    CHUNK: _ClassVar[Kind]
    ERROR: _ClassVar[Kind]
    UPDATE: _ClassVar[Kind]
    BYE: _ClassVar[Kind]
    SUBSCRIBE: _ClassVar[Kind]
    CREDIT: _ClassVar[Kind]

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NONE: _ClassVar[Encoding]
    PROTOBUF: _ClassVar[Encoding]
    MSGPACK: _ClassVar[Encoding]
    RAW: _ClassVar[Encoding]
KIND_UNSPECIFIED: Kind
HELLO: Kind
REPORT: Kind
ACK: Kind
HEARTBEAT: Kind
REQUEST: Kind
RESPONSE: Kind
CHUNK: Kind
ERROR: Kind
UPDATE: Kind
BYE: Kind
SUBSCRIBE: Kind
CREDIT: Kind
NONE: Encoding
PROTOBUF: Encoding
MSGPACK: Encoding
RAW: Encoding

class Envelope(_message.Message):
    __slots__ = ("kind", "node", "seq", "time", "type", "payload", "encoding", "schema", "request_id", "params", "error_code", "error", "last")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    kind: Kind
    node: str
    seq: int
    time: float
    type: str
    payload: bytes
    encoding: Encoding
    schema: str
    request_id: int
    params: _containers.ScalarMap[str, str]
    error_code: str
    error: str
    last: bool
    def __init__(self, kind: _Optional[_Union[Kind, str]] = ..., node: _Optional[str] = ..., seq: _Optional[int] = ..., time: _Optional[float] = ..., type: _Optional[str] = ..., payload: _Optional[bytes] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., schema: _Optional[str] = ..., request_id: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ..., error_code: _Optional[str] = ..., error: _Optional[str] = ..., last: _Optional[bool] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("envelopes",)
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedCompositeFieldContainer[Envelope]
    def __init__(self, envelopes: _Optional[_Iterable[_Union[Envelope, _Mapping]]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node", "hostname", "os", "os_release", "cpu_count", "memory_total", "boot_time", "agent_version", "instance", "python_version", "pid", "request_types")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_RELEASE_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BOOT_TIME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPES_FIELD_NUMBER: _ClassVar[int]
    node: str
    hostname: str
    os: str
    os_release: str
    cpu_count: int
    memory_total: int
    boot_time: float
    agent_version: str
    instance: str
    python_version: str
    pid: int
    request_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node: _Optional[str] = ..., hostname: _Optional[str] = ..., os: _Optional[str] = ..., os_release: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_total: _Optional[int] = ..., boot_time: _Optional[float] = ..., agent_version: _Optional[str] = ..., instance: _Optional[str] = ..., python_version: _Optional[str] = ..., pid: _Optional[int] = ..., request_types: _Optional[_Iterable[str]] = ...) -> None: ...

class CollectorInfo(_message.Message):
    __slots__ = ("alias", "version", "update_types", "request_types", "heartbeat_interval", "subscription_lease", "max_frame_bytes", "node_timeout", "update_intervals")
    class UpdateIntervalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TYPES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_LEASE_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    NODE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_INTERVALS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    version: str
    update_types: _containers.RepeatedScalarFieldContainer[str]
    request_types: _containers.RepeatedScalarFieldContainer[str]
    heartbeat_interval: float
    subscription_lease: float
    max_frame_bytes: int
    node_timeout: float
    update_intervals: _containers.ScalarMap[str, float]
    def __init__(self, alias: _Optional[str] = ..., version: _Optional[str] = ..., update_types: _Optional[_Iterable[str]] = ..., request_types: _Optional[_Iterable[str]] = ..., heartbeat_interval: _Optional[float] = ..., subscription_lease: _Optional[float] = ..., max_frame_bytes: _Optional[int] = ..., node_timeout: _Optional[float] = ..., update_intervals: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Memory(_message.Message):
    __slots__ = ("total", "available", "used", "free", "percent")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    total: int
    available: int
    used: int
    free: int
    percent: float
    def __init__(self, total: _Optional[int] = ..., available: _Optional[int] = ..., used: _Optional[int] = ..., free: _Optional[int] = ..., percent: _Optional[float] = ...) -> None: ...

class Swap(_message.Message):
    __slots__ = ("total", "used", "free", "percent")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    total: int
    used: int
    free: int
    percent: float
    def __init__(self, total: _Optional[int] = ..., used: _Optional[int] = ..., free: _Optional[int] = ..., percent: _Optional[float] = ...) -> None: ...

class DiskUsage(_message.Message):
    __slots__ = ("mountpoint", "device", "fstype", "total", "used", "free", "percent")
    MOUNTPOINT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    FSTYPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    mountpoint: str
    device: str
    fstype: str
    total: int
    used: int
    free: int
    percent: float
    def __init__(self, mountpoint: _Optional[str] = ..., device: _Optional[str] = ..., fstype: _Optional[str] = ..., total: _Optional[int] = ..., used: _Optional[int] = ..., free: _Optional[int] = ..., percent: _Optional[float] = ...) -> None: ...

class DiskIO(_message.Message):
    __slots__ = ("name", "read_bytes", "write_bytes", "read_count", "write_count", "read_rate", "write_rate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_COUNT_FIELD_NUMBER: _ClassVar[int]
    WRITE_COUNT_FIELD_NUMBER: _ClassVar[int]
    READ_RATE_FIELD_NUMBER: _ClassVar[int]
    WRITE_RATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    read_bytes: int
    write_bytes: int
    read_count: int
    write_count: int
    read_rate: float
    write_rate: float
    def __init__(self, name: _Optional[str] = ..., read_bytes: _Optional[int] = ..., write_bytes: _Optional[int] = ..., read_count: _Optional[int] = ..., write_count: _Optional[int] = ..., read_rate: _Optional[float] = ..., write_rate: _Optional[float] = ...) -> None: ...

class NetIO(_message.Message):
    __slots__ = ("name", "bytes_sent", "bytes_recv", "packets_sent", "packets_recv", "errin", "errout", "dropin", "dropout", "send_rate", "recv_rate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECV_FIELD_NUMBER: _ClassVar[int]
    PACKETS_SENT_FIELD_NUMBER: _ClassVar[int]
    PACKETS_RECV_FIELD_NUMBER: _ClassVar[int]
    ERRIN_FIELD_NUMBER: _ClassVar[int]
    ERROUT_FIELD_NUMBER: _ClassVar[int]
    DROPIN_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    SEND_RATE_FIELD_NUMBER: _ClassVar[int]
    RECV_RATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    errin: int
    errout: int
    dropin: int
    dropout: int
    send_rate: float
    recv_rate: float
    def __init__(self, name: _Optional[str] = ..., bytes_sent: _Optional[int] = ..., bytes_recv: _Optional[int] = ..., packets_sent: _Optional[int] = ..., packets_recv: _Optional[int] = ..., errin: _Optional[int] = ..., errout: _Optional[int] = ..., dropin: _Optional[int] = ..., dropout: _Optional[int] = ..., send_rate: _Optional[float] = ..., recv_rate: _Optional[float] = ...) -> None: ...

class SystemStats(_message.Message):
    __slots__ = ("time", "cpu_percent", "cpu_percent_per_cpu", "load1", "load5", "load15", "memory", "swap", "disks", "disk_io_total", "disk_io", "net_io_total", "net_io", "interval")
    TIME_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_PER_CPU_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    LOAD5_FIELD_NUMBER: _ClassVar[int]
    LOAD15_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    DISKS_FIELD_NUMBER: _ClassVar[int]
    DISK_IO_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DISK_IO_FIELD_NUMBER: _ClassVar[int]
    NET_IO_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NET_IO_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    time: float
    cpu_percent: float
    cpu_percent_per_cpu: _containers.RepeatedScalarFieldContainer[float]
    load1: float
    load5: float
    load15: float
    memory: Memory
    swap: Swap
    disks: _containers.RepeatedCompositeFieldContainer[DiskUsage]
    disk_io_total: DiskIO
    disk_io: _containers.RepeatedCompositeFieldContainer[DiskIO]
    net_io_total: NetIO
    net_io: _containers.RepeatedCompositeFieldContainer[NetIO]
    interval: float
    def __init__(self, time: _Optional[float] = ..., cpu_percent: _Optional[float] = ..., cpu_percent_per_cpu: _Optional[_Iterable[float]] = ..., load1: _Optional[float] = ..., load5: _Optional[float] = ..., load15: _Optional[float] = ..., memory: _Optional[_Union[Memory, _Mapping]] = ..., swap: _Optional[_Union[Swap, _Mapping]] = ..., disks: _Optional[_Iterable[_Union[DiskUsage, _Mapping]]] = ..., disk_io_total: _Optional[_Union[DiskIO, _Mapping]] = ..., disk_io: _Optional[_Iterable[_Union[DiskIO, _Mapping]]] = ..., net_io_total: _Optional[_Union[NetIO, _Mapping]] = ..., net_io: _Optional[_Iterable[_Union[NetIO, _Mapping]]] = ..., interval: _Optional[float] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("name", "modtime", "data", "offset", "size", "last")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODTIME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    name: str
    modtime: float
    data: bytes
    offset: int
    size: int
    last: bool
    def __init__(self, name: _Optional[str] = ..., modtime: _Optional[float] = ..., data: _Optional[bytes] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ..., last: _Optional[bool] = ...) -> None: ...

class Files(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[File]
    def __init__(self, files: _Optional[_Iterable[_Union[File, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("time", "node", "kind", "severity", "message", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    time: float
    node: str
    kind: str
    severity: str
    message: str
    attrs: _containers.ScalarMap[str, str]
    def __init__(self, time: _Optional[float] = ..., node: _Optional[str] = ..., kind: _Optional[str] = ..., severity: _Optional[str] = ..., message: _Optional[str] = ..., attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Samples(_message.Message):
    __slots__ = ("time", "names", "values")
    TIME_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    time: float
    names: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, time: _Optional[float] = ..., names: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node", "hostname", "agent_version", "first_seen", "last_seen", "status", "last_seq", "backlog", "gaps", "reconnects", "os", "cpu_count", "memory_total", "bad_reports", "site")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BAD_REPORTS_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    node: str
    hostname: str
    agent_version: str
    first_seen: float
    last_seen: float
    status: str
    last_seq: int
    backlog: int
    gaps: int
    reconnects: int
    os: str
    cpu_count: int
    memory_total: int
    bad_reports: int
    site: str
    def __init__(self, node: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., first_seen: _Optional[float] = ..., last_seen: _Optional[float] = ..., status: _Optional[str] = ..., last_seq: _Optional[int] = ..., backlog: _Optional[int] = ..., gaps: _Optional[int] = ..., reconnects: _Optional[int] = ..., os: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_total: _Optional[int] = ..., bad_reports: _Optional[int] = ..., site: _Optional[str] = ...) -> None: ...

class NodeList(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ...) -> None: ...

class NodeSummary(_message.Message):
    __slots__ = ("node", "hostname", "time", "cpu_percent", "memory_percent", "load1", "net_recv_rate", "net_send_rate", "disk_read_rate", "disk_write_rate")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    NET_RECV_RATE_FIELD_NUMBER: _ClassVar[int]
    NET_SEND_RATE_FIELD_NUMBER: _ClassVar[int]
    DISK_READ_RATE_FIELD_NUMBER: _ClassVar[int]
    DISK_WRITE_RATE_FIELD_NUMBER: _ClassVar[int]
    node: str
    hostname: str
    time: float
    cpu_percent: float
    memory_percent: float
    load1: float
    net_recv_rate: float
    net_send_rate: float
    disk_read_rate: float
    disk_write_rate: float
    def __init__(self, node: _Optional[str] = ..., hostname: _Optional[str] = ..., time: _Optional[float] = ..., cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., load1: _Optional[float] = ..., net_recv_rate: _Optional[float] = ..., net_send_rate: _Optional[float] = ..., disk_read_rate: _Optional[float] = ..., disk_write_rate: _Optional[float] = ...) -> None: ...

class SystemStatsSummary(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeSummary]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeSummary, _Mapping]]] = ...) -> None: ...

class HistorySeries(_message.Message):
    __slots__ = ("name", "time", "min", "avg", "max", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    AVG_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    time: _containers.RepeatedScalarFieldContainer[float]
    min: _containers.RepeatedScalarFieldContainer[float]
    avg: _containers.RepeatedScalarFieldContainer[float]
    max: _containers.RepeatedScalarFieldContainer[float]
    count: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., time: _Optional[_Iterable[float]] = ..., min: _Optional[_Iterable[float]] = ..., avg: _Optional[_Iterable[float]] = ..., max: _Optional[_Iterable[float]] = ..., count: _Optional[_Iterable[float]] = ...) -> None: ...

class SystemStatsHistory(_message.Message):
    __slots__ = ("node", "samples", "resolution", "step", "series")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    node: str
    samples: _containers.RepeatedCompositeFieldContainer[SystemStats]
    resolution: str
    step: float
    series: _containers.RepeatedCompositeFieldContainer[HistorySeries]
    def __init__(self, node: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[SystemStats, _Mapping]]] = ..., resolution: _Optional[str] = ..., step: _Optional[float] = ..., series: _Optional[_Iterable[_Union[HistorySeries, _Mapping]]] = ...) -> None: ...
