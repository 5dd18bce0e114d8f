"""Builds the generated modules' messages from their serialized descriptors.

protoc's own Python output checks at import that the protobuf runtime has the
major version it was generated with, so one copy of it cannot serve protobuf 5,
6 and 7. The modules in ``crms.v1`` (written by
``clients/python/tools/protoc-gen-crms-python``) carry only each .proto file's
serialized ``FileDescriptorProto`` and call ``build_file``, which uses what every
one of those runtimes has: the default descriptor pool, the message factory and
the enum wrapper. gRPC stubs in ``*_pb2_grpc.py`` use the channel's generic
``unary_unary``/``unary_stream``/``stream_stream``, which every grpcio has.
"""

from __future__ import annotations

from typing import Any, MutableMapping, Optional

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


def build_file(namespace: MutableMapping[str, Any], serialized: bytes) -> Any:
    """Adds one file to the default pool and defines its messages and enums in `namespace`.

    Defines, as protoc's output does: each top-level message class by name, each
    top-level enum as an ``EnumTypeWrapper`` and each of its values as a module
    constant (``JOB_STATE_PENDING``), and ``DESCRIPTOR`` (the ``FileDescriptor``,
    also returned). Nested messages and enums are attributes of their message
    class. The file's imports must be imported first (so they are in the pool).
    """
    file = descriptor_pool.Default().AddSerializedFile(serialized)
    namespace["DESCRIPTOR"] = file
    for name, message in file.message_types_by_name.items():
        namespace[name] = _message_class(message, namespace.get("__name__"))
    for name, enum in file.enum_types_by_name.items():
        namespace[name] = EnumTypeWrapper(enum)
        for value in enum.values:
            namespace[value.name] = value.number
    return file



def _message_class(message: Any, module: Optional[str]) -> Any:
    """The class of `message`, with its nested messages and enums as attributes.

    The upb runtime resolves nested types on attribute access by itself; the
    pure-Python one (PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python) does not.
    The class names the generated module as its own, as protoc's classes do.
    """
    cls = message_factory.GetMessageClass(message)
    if module and getattr(cls, "__module__", None) != module:
        try:
            cls.__module__ = module
        except (AttributeError, TypeError):
            pass  # a runtime whose classes refuse it keeps its own
    for nested in message.nested_types:
        nested_cls = _message_class(nested, module)
        if not hasattr(cls, nested.name):
            setattr(cls, nested.name, nested_cls)
    for enum in message.enum_types:
        if not hasattr(cls, enum.name):
            setattr(cls, enum.name, EnumTypeWrapper(enum))
    return cls
