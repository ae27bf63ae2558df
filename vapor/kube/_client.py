"""One async connection to the API server, and typed access to each Vapor kind."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import aiohttp
import orjson
from kubernetes.aio import client, config, watch
from kubernetes.aio.client.exceptions import ApiException
from multidict import CIMultiDict

from ..model import MetadataPatch, Model, Resource
from ._errors import KubeError, from_api_exception
from ._events import EventRecorder

R = TypeVar("R", bound=Resource)  # type: ignore[type-arg]
T = TypeVar("T")

APPLY_PATCH = "application/apply-patch+yaml"
WATCH_GRACE_SECONDS = 30  # how much longer than the server's timeoutSeconds the client waits for a watch to end
MERGE_PATCH = "application/merge-patch+json"


def unmanaged(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (an object as the API server sent it) without metadata.managedFields.

    Who set which field is half of an object's size (four writers of a VM: 8 of
    its 16 KiB once read into the model); a cache that never asks keeps it out.
    """
    metadata = raw.get("metadata")
    if isinstance(metadata, dict) and "managedFields" in metadata:
        raw = {**raw, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
    return raw


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NETRC")


def environment_matters() -> bool:
    """Whether a proxy variable or a netrc file is set, which the client then honours (aiohttp's trust_env).

    With trust_env every request looks both up again in a worker thread (about 5% of
    the operator's CPU while it placed 10,000 VMs); when neither is there it finds
    nothing, so the connection is made without it.
    """
    return any(os.environ.get(name) for name in PROXY_VARIABLES) or (Path.home() / ".netrc").exists()


async def call(awaitable: Awaitable[T]) -> T:
    """Await a kubernetes client call, raising KubeError (NotFound, Conflict) on failure."""
    try:
        return await awaitable
    except ApiException as exc:
        raise from_api_exception(exc) from exc


class Kube:
    """A component's connection to the Kubernetes API."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    # Each API group is made on first use: the generated client builds a group's pydantic call validators
    # when its module loads, and CoreV1Api alone is about 24 MiB, which the agent needs only to read a Secret.
    @functools.cached_property
    def custom(self) -> client.CustomObjectsApi:
        """Custom resources (every Vapor kind)."""
        return client.CustomObjectsApi(self.api)

    @functools.cached_property
    def core(self) -> client.CoreV1Api:
        """The core group (Secrets, ServiceAccounts, Namespaces)."""
        return client.CoreV1Api(self.api)

    @functools.cached_property
    def coordination(self) -> client.CoordinationV1Api:
        """Leases."""
        return client.CoordinationV1Api(self.api)

    @functools.cached_property
    def events(self) -> EventRecorder:
        """Kubernetes Events about Vapor objects."""
        return EventRecorder(client.EventsV1Api(self.api))

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        """Connect with a kubeconfig (argument, then $KUBECONFIG), else the in-cluster service account."""
        path = kubeconfig or os.environ.get("KUBECONFIG")
        configuration = client.Configuration()
        if path:
            await config.load_kube_config(config_file=path, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
        configuration.client_session_kwargs = {"trust_env": environment_matters()}
        return cls(client.ApiClient(configuration))

    def impersonating(self, user: str, groups: Sequence[str]) -> Kube:
        """A connection that acts as ``user`` in ``groups`` (Impersonate-User and -Group on every request).

        The API server then authorizes each request as that user, with the
        caller's own permission to impersonate checked first. The connection
        has its own pool; close it when done.
        """
        configuration = copy.copy(self.api.configuration)
        headers = CIMultiDict([("Impersonate-User", user), *(("Impersonate-Group", group) for group in groups)])
        kwargs = {**(configuration.client_session_kwargs or {}), "headers": headers}  # one header line per group
        configuration.client_session_kwargs = kwargs
        return Kube(client.ApiClient(configuration))

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Any API call by path, answered as the decoded JSON object (KubeError on a non-2xx answer).

        For the kinds that have no model here (pods, deployments, CRDs): no
        typed decode, so a list of thousands of pods costs one orjson parse.
        """
        _, decoded = await self.request_with_status(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        return decoded

    async def request_with_status(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """:meth:`request`, with the HTTP status too (an apply answers 201 when it created the object)."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        serialized = await self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = await self.api.call_api(*serialized, _request_timeout=timeout)
        data = await response.read()
        if not 200 <= response.status < 300:
            text = data.decode("utf-8", "replace") if data else None
            raise from_api_exception(ApiException(status=response.status, reason=response.reason, body=text))
        decoded: Any = orjson.loads(data) if data else {}
        return response.status, decoded if isinstance(decoded, dict) else {"items": decoded}

    async def ready(self, timeout: float = 2.0) -> bool:
        """Whether the API server says it is ready (``GET /readyz`` answers 200); False for any other answer or none.

        While it starts it already answers requests, but ``/readyz`` fails
        until its caches, those of its RBAC authorizer among them, are filled.
        """
        serialized = await self.api.param_serialize("GET", "/readyz", auth_settings=["BearerToken"])
        try:
            response = await self.api.call_api(*serialized, _request_timeout=timeout)
            await response.read()
        except (ApiException, OSError, TimeoutError, aiohttp.ClientError):
            return False
        return bool(response.status == 200)

    def resources(self, kind: type[R]) -> Resources[R]:
        """Typed reads and writes of one kind."""
        return Resources(self, kind)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.api.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(frozen=True)
class WatchEvent(Generic[R]):
    """One change seen by a watch: ADDED, MODIFIED or DELETED, with the object after it."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: R


class Resources(Generic[R]):
    """Reads and writes of one Vapor kind, as model objects."""

    def __init__(self, kube: Kube, kind: type[R]) -> None:
        self.kube = kube
        self.kind = kind
        self._gvp = (kind.group, kind.version, kind.plural())

    def _args(self, namespace: str | None) -> tuple[Any, ...]:
        if self.kind.namespaced():
            if not namespace:
                raise ValueError(f"{self.kind.__name__} is namespaced: name a namespace")
            return (self.kind.group, self.kind.version, namespace, self.kind.plural())
        return self._gvp

    def _method(self, verb: str) -> Any:
        scope = "namespaced" if self.kind.namespaced() else "cluster"
        return getattr(self.kube.custom, verb.format(scope=scope))

    async def get(self, name: str, namespace: str | None = None) -> R:
        """The object, or NotFound."""
        raw = await call(self._method("get_{scope}_custom_object")(*self._args(namespace), name))
        return self.kind.from_api(raw)

    async def list(
        self, namespace: str | None = None, *, label_selector: str | None = None, managed_fields: bool = True
    ) -> tuple[list[R], str]:
        """Every object (in a namespace, or all of them) and the list's resourceVersion.

        ``managed_fields=False`` leaves metadata.managedFields out of the objects (see :func:`unmanaged`).
        """
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if namespace or not self.kind.namespaced():
            raw = await call(self._method("list_{scope}_custom_object")(*self._args(namespace), **kwargs))
        else:
            raw = await call(self.kube.custom.list_cluster_custom_object(*self._gvp, **kwargs))
        read = self.kind.from_api if managed_fields else self._from_api_unmanaged
        return [read(item) for item in raw["items"]], raw["metadata"]["resourceVersion"]

    def _from_api_unmanaged(self, raw: dict[str, Any]) -> R:
        return self.kind.from_api(unmanaged(raw))

    async def create(self, obj: R, *, field_manager: str) -> R:
        """Create the object."""
        body = obj.to_api()
        raw = await call(
            self._method("create_{scope}_custom_object")(
                *self._args(obj.metadata.namespace), body, field_manager=field_manager
            )
        )
        return self.kind.from_api(raw)

    async def apply(self, obj: R, *, field_manager: str, force: bool = False) -> R:
        """Server-side apply: the fields set in ``obj`` become owned by ``field_manager``."""
        raw = await call(
            self._method("patch_{scope}_custom_object")(
                *self._args(obj.metadata.namespace),
                obj.name,
                obj.to_api(),
                field_manager=field_manager,
                force=force,
                _content_type=APPLY_PATCH,
            )
        )
        if raw is None:  # the generated client decodes only 200, and an apply that creates answers 201
            return await self.get(obj.name, obj.metadata.namespace)
        return self.kind.from_api(raw)

    async def patch(
        self,
        name: str,
        *,
        metadata: MetadataPatch | None = None,
        spec: Model | None = None,
        namespace: str | None = None,
        field_manager: str,
    ) -> R:
        """JSON merge patch of the object's metadata and spec: the fields set in the models, nothing else.

        ``spec`` is usually a ``Spec.partial(...)``; a field set to None removes it.
        """
        body: dict[str, Any] = {}
        if metadata is not None:
            body["metadata"] = metadata.to_api()
        if spec is not None:
            body["spec"] = spec.to_api()
        if not body:
            raise ValueError("a patch needs metadata or spec")
        raw = await call(
            self._method("patch_{scope}_custom_object")(
                *self._args(namespace), name, body, field_manager=field_manager, _content_type=MERGE_PATCH
            )
        )
        return self.kind.from_api(raw)

    async def patch_status(self, name: str, status: Model, *, namespace: str | None = None, field_manager: str) -> R:
        """JSON merge patch of the status subresource: the fields set in ``status`` (None removes one)."""
        body = status.to_api()
        raw = await call(
            self._method("patch_{scope}_custom_object_status")(
                *self._args(namespace),
                name,
                {"status": body},
                field_manager=field_manager,
                _content_type=MERGE_PATCH,
            )
        )
        return self.kind.from_api(raw)

    async def apply_status(
        self,
        name: str,
        status: Model,
        *,
        namespace: str | None = None,
        field_manager: str,
        force: bool = True,
        resource_version: str | None = None,
    ) -> R:
        """Server-side apply of part of the status: ``field_manager`` owns exactly the fields set in ``status``.

        Fields left unset (or None) are not sent, so the manager gives them up.
        Lists keyed by a field (conditions by type) merge entry by entry, so two
        writers can each own their own conditions of one object. With
        ``resource_version`` the apply fails with Conflict when the object
        changed since that version. Returns the object after the apply.
        """
        body = self._apply_body(name, namespace, "status", status.to_apply(), resource_version)
        raw = await call(
            self._method("patch_{scope}_custom_object_status")(
                *self._args(namespace),
                name,
                body,
                field_manager=field_manager,
                force=force,
                _content_type=APPLY_PATCH,
            )
        )
        return self.kind.from_api(raw)

    async def apply_spec(
        self,
        name: str,
        spec: Model,
        *,
        namespace: str | None = None,
        field_manager: str,
        force: bool = True,
        dry_run: bool = False,
    ) -> R:
        """Server-side apply of part of the spec (``Spec.partial(...)``): ``field_manager`` owns the fields set.

        As with :meth:`apply_status`, fields left unset (or None) are not sent,
        and lists keyed by a field merge entry by entry. ``dry_run``: the API
        server checks the change and answers the object it would store, but
        stores nothing.
        """
        raw = await call(
            self._method("patch_{scope}_custom_object")(
                *self._args(namespace),
                name,
                self._apply_body(name, namespace, "spec", spec.to_apply()),
                field_manager=field_manager,
                force=force,
                dry_run="All" if dry_run else None,
                _content_type=APPLY_PATCH,
            )
        )
        if raw is None:  # the generated client decodes only 200, and an apply that creates answers 201
            return await self.get(name, namespace)
        return self.kind.from_api(raw)

    def _apply_body(
        self, name: str, namespace: str | None, part: str, value: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """An apply configuration naming the object (and the version it expects) and one part of it."""
        metadata = {"name": name, "namespace": namespace, "resourceVersion": resource_version}
        return {
            "apiVersion": self.kind.group + "/" + self.kind.version,
            "kind": self.kind.__name__,
            "metadata": {k: v for k, v in metadata.items() if v},
            part: value,
        }

    async def delete(self, name: str, namespace: str | None = None) -> None:
        """Ask for deletion (finalizers may hold the object for a while)."""
        await call(self._method("delete_{scope}_custom_object")(*self._args(namespace), name))

    async def watch(
        self,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        managed_fields: bool = True,
    ) -> AsyncIterator[WatchEvent[R]]:
        """Changes after ``resource_version``, until the server ends the watch.

        Raises KubeError with status 410 when that version is too old: list again.
        ``managed_fields=False`` leaves metadata.managedFields out of the objects.
        """
        kwargs: dict[str, Any] = {
            "timeout_seconds": timeout_seconds,
            "allow_watch_bookmarks": False,
            # The client's own limit (5 minutes unless told) must outlast the server's, or a quiet watch ends
            # as a client timeout at the very moment the server would have ended it, and looks broken.
            "_request_timeout": timeout_seconds + WATCH_GRACE_SECONDS,
        }
        if label_selector:
            kwargs["label_selector"] = label_selector
        if resource_version:
            kwargs["resource_version"] = resource_version
        if namespace or not self.kind.namespaced():
            func, args = self._method("list_{scope}_custom_object"), self._args(namespace)
        else:
            func, args = self.kube.custom.list_cluster_custom_object, self._gvp
        async with watch.Watch() as w:
            try:
                async for event in w.stream(func, *args, **kwargs):
                    kind = event["type"]
                    obj = event["object"]
                    if kind == "ERROR":
                        code = int(obj.get("code", 0))
                        raise KubeError(code, str(obj.get("reason", "")), str(obj.get("message", "")), obj)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        yield WatchEvent(kind, self.kind.from_api(obj if managed_fields else unmanaged(obj)))
            except ApiException as exc:
                raise from_api_exception(exc) from exc
