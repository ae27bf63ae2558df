"""The part of the CRI (``runtime.v1``, Kubernetes' Container Runtime Interface) that Vapor speaks, described in code.

The CRI is gRPC with protobuf messages. Rather than generate and ship stubs,
this module describes the messages Vapor uses, with their field numbers from
the CRI's ``api.proto``, as a protobuf descriptor built at import time, and
makes message classes from it. Protobuf skips fields a description leaves
out, so a subset reads a newer runtime's answers correctly.

The agent reads (Version, ListContainers, ContainerStatus); the write side
(RunPodSandbox, CreateContainer, ...) is here so that tests can make real CRI
containers in a real containerd.

``call(socket, "ListContainers", {...})`` sends a request given as a dict and
returns the answer message.
"""

from __future__ import annotations

from typing import Any

import grpc  # type: ignore[import-untyped]
from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message_factory,
)
from google.protobuf.message import Message  # type: ignore[import-untyped]

PACKAGE = "runtime.v1"
SERVICE = f"/{PACKAGE}.RuntimeService"

ENUMS: dict[str, list[str]] = {
    "ContainerState": ["CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED", "CONTAINER_UNKNOWN"],
    "NamespaceMode": ["POD", "CONTAINER", "NODE", "TARGET"],
}

# message -> [(field, number, type)]; a type in [] is repeated, "map" is map<string, string>.
MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "VersionRequest": [("version", 1, "string")],
    "VersionResponse": [
        ("version", 1, "string"),
        ("runtime_name", 2, "string"),
        ("runtime_version", 3, "string"),
        ("runtime_api_version", 4, "string"),
    ],
    "ImageSpec": [("image", 1, "string")],
    "KeyValue": [("key", 1, "string"), ("value", 2, "string")],
    "ContainerMetadata": [("name", 1, "string"), ("attempt", 2, "uint32")],
    "ContainerStateValue": [("state", 1, "ContainerState")],
    "ContainerFilter": [
        ("id", 1, "string"),
        ("state", 2, "ContainerStateValue"),
        ("pod_sandbox_id", 3, "string"),
        ("label_selector", 4, "map"),
    ],
    "ListContainersRequest": [("filter", 1, "ContainerFilter")],
    "Container": [
        ("id", 1, "string"),
        ("pod_sandbox_id", 2, "string"),
        ("metadata", 3, "ContainerMetadata"),
        ("image", 4, "ImageSpec"),
        ("image_ref", 5, "string"),
        ("state", 6, "ContainerState"),
        ("created_at", 7, "int64"),
        ("labels", 8, "map"),
        ("annotations", 9, "map"),
    ],
    "ListContainersResponse": [("containers", 1, "[Container]")],
    "ContainerStatusRequest": [("container_id", 1, "string"), ("verbose", 2, "bool")],
    "ContainerStatus": [
        ("id", 1, "string"),
        ("metadata", 2, "ContainerMetadata"),
        ("state", 3, "ContainerState"),
        ("created_at", 4, "int64"),
        ("started_at", 5, "int64"),
        ("finished_at", 6, "int64"),
        ("exit_code", 7, "int32"),
        ("image", 8, "ImageSpec"),
        ("image_ref", 9, "string"),
        ("reason", 10, "string"),
        ("message", 11, "string"),
        ("labels", 12, "map"),
        ("annotations", 13, "map"),
        ("log_path", 15, "string"),
    ],
    "ContainerStatusResponse": [("status", 1, "ContainerStatus"), ("info", 2, "map")],
    # -- the write side (tests) --
    "NamespaceOption": [("network", 1, "NamespaceMode"), ("pid", 2, "NamespaceMode"), ("ipc", 3, "NamespaceMode")],
    "LinuxSandboxSecurityContext": [("namespace_options", 1, "NamespaceOption")],
    "LinuxPodSandboxConfig": [("cgroup_parent", 1, "string"), ("security_context", 2, "LinuxSandboxSecurityContext")],
    "PodSandboxMetadata": [
        ("name", 1, "string"),
        ("uid", 2, "string"),
        ("namespace", 3, "string"),
        ("attempt", 4, "uint32"),
    ],
    "PodSandboxConfig": [
        ("metadata", 1, "PodSandboxMetadata"),
        ("hostname", 2, "string"),
        ("log_directory", 3, "string"),
        ("labels", 6, "map"),
        ("annotations", 7, "map"),
        ("linux", 8, "LinuxPodSandboxConfig"),
    ],
    "RunPodSandboxRequest": [("config", 1, "PodSandboxConfig"), ("runtime_handler", 2, "string")],
    "RunPodSandboxResponse": [("pod_sandbox_id", 1, "string")],
    "StopPodSandboxRequest": [("pod_sandbox_id", 1, "string")],
    "StopPodSandboxResponse": [],
    "RemovePodSandboxRequest": [("pod_sandbox_id", 1, "string")],
    "RemovePodSandboxResponse": [],
    "ContainerConfig": [
        ("metadata", 1, "ContainerMetadata"),
        ("image", 2, "ImageSpec"),
        ("command", 3, "[string]"),
        ("args", 4, "[string]"),
        ("working_dir", 5, "string"),
        ("envs", 6, "[KeyValue]"),
        ("labels", 9, "map"),
        ("annotations", 10, "map"),
        ("log_path", 11, "string"),
    ],
    "CreateContainerRequest": [
        ("pod_sandbox_id", 1, "string"),
        ("config", 2, "ContainerConfig"),
        ("sandbox_config", 3, "PodSandboxConfig"),
    ],
    "CreateContainerResponse": [("container_id", 1, "string")],
    "StartContainerRequest": [("container_id", 1, "string")],
    "StartContainerResponse": [],
    "StopContainerRequest": [("container_id", 1, "string"), ("timeout", 2, "int64")],
    "StopContainerResponse": [],
    "RemoveContainerRequest": [("container_id", 1, "string")],
    "RemoveContainerResponse": [],
}

_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
}


def _describe() -> descriptor_pb2.FileDescriptorProto:
    Field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="vapor/cri_subset.proto", package=PACKAGE, syntax="proto3")
    for enum_name, values in ENUMS.items():
        enum = file.enum_type.add(name=enum_name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for message_name, fields in MESSAGES.items():
        message = file.message_type.add(name=message_name)
        for name, number, kind in fields:
            field = message.field.add(name=name, number=number, json_name=name)
            repeated = kind.startswith("[")
            kind = kind.strip("[]")
            field.label = Field.LABEL_REPEATED if repeated else Field.LABEL_OPTIONAL
            if kind == "map":  # map<string, string>: a repeated nested XxxEntry with map_entry set
                entry_name = "".join(part.title() for part in name.split("_")) + "Entry"
                entry = message.nested_type.add(name=entry_name)
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL)
                field.label = Field.LABEL_REPEATED
                field.type = Field.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{message_name}.{entry_name}"
            elif kind in _SCALARS:
                field.type = _SCALARS[kind]
            elif kind in ENUMS:
                field.type = Field.TYPE_ENUM
                field.type_name = f".{PACKAGE}.{kind}"
            else:
                field.type = Field.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{kind}"
    return file


_POOL = descriptor_pool.DescriptorPool()  # a private pool: no clash with another copy of runtime.v1
_POOL.Add(_describe())


def message_class(name: str) -> type[Message]:
    """The class of CRI message ``name`` (for example ``"ListContainersRequest"``)."""
    cls: type[Message] = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))
    return cls


def to_dict(message: Message) -> dict[str, Any]:
    """A message as a dict with the proto's field names (int64 values as strings, as JSON maps them)."""
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


async def call(socket: str, method: str, request: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """Call ``RuntimeService/<method>`` on the runtime at the unix socket ``socket``; the answer message.

    Raises ``grpc.aio.AioRpcError`` when the runtime fails or does not answer.
    """
    request_class = message_class(f"{method}Request")
    response_class = message_class(f"{method}Response")
    body = json_format.ParseDict(request or {}, request_class())
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        rpc = channel.unary_unary(
            f"{SERVICE}/{method}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return await rpc(body, timeout=timeout)
