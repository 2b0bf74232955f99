"""Turn decoded payloads into JSON-ready values for clients and views.

Protobuf goes through ``json_format`` with field names as in the .proto file;
64-bit integers, which json_format writes as strings, are turned back into
numbers so that e.g. memory totals print exactly as psutil gives them.
msgpack values pass as they are, bytes become base64 text.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["to_jsonable"]

_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def to_jsonable(value: Any) -> Any:
    """A JSON-serializable view of a decoded payload (protobuf, msgpack value or bytes)."""
    if isinstance(value, Message):
        data = json_format.MessageToDict(
            value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return _fix_int64(data, value.DESCRIPTOR)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(_key(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def _key(key: Any) -> Any:
    if isinstance(key, (bytes, bytearray)):
        return base64.b64encode(bytes(key)).decode("ascii")
    return key


def _fix_int64(data: dict[str, Any], descriptor: Any) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name not in data:
            continue
        data[field.name] = _fix_value(data[field.name], field)
    return data


def _fix_value(value: Any, field: FieldDescriptor) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {k: _fix_scalar_or_message(v, value_field) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_scalar_or_message(v, field) for v in value]
    return _fix_scalar_or_message(value, field)


def _fix_scalar_or_message(value: Any, field: FieldDescriptor) -> Any:
    if field.message_type is not None and isinstance(value, dict):
        return _fix_int64(value, field.message_type)
    if field.type in _INT64_TYPES and isinstance(value, str):
        return int(value)
    return value
