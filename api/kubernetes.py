"""/api/v1/kubernetes: pods, deployments, services and CRDs of the cluster Vapor runs in.

Reads are one LIST per request, shaped like ``kubectl get``'s columns
(ready "1/1", restarts, age "2d"). Unlike Hosts and VMs these kinds are not
cached: a cluster can hold far more pods than the gateway should mirror in
every replica, and these views are read by people, not polled by agents.

Every read and write is made as the logged-in user (impersonation, see
``_impersonation``): what a user may see and change here is exactly what
Kubernetes RBAC lets that user do; a refusal is 403 PERMISSION_DENIED with
the API server's reason.

Writes take a manifest in JSON or YAML and apply it with server-side apply,
as ``kubectl apply --server-side`` does: the user's field manager owns the
fields it sets, a field another manager owns is a CONFLICT (unless
``?force=true``), and ``?dry_run=true`` shows the result without storing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, request
from quart_schema import document_request, document_response, tag, validate_querystring, validate_response

from vapor.agentapi.errors import CONFLICT, INVALID_INPUT
from vapor.kube import KubeError
from vapor.model.virtualmachine import DNS_LABEL_PATTERN

from ._errors import INVALID_INPUT_STATUS, APIError, refusal, unreachable
from ._guard import current_user, require
from ._kubeviews import (
    CRDList,
    DeploymentList,
    PodList,
    ServiceList,
    crd_view,
    deployment_view,
    pod_view,
    service_view,
)
from ._schema import Failure, Success
from ._writes import as_user, field_manager

blueprint = Blueprint("kubernetes", __name__, url_prefix="/api/v1/kubernetes")

JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml"})
LIST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Kind:
    """One kind these endpoints write: where it lives in the API."""

    kind: str
    api_version: str

    def collection(self, namespace: str | None) -> str:
        """The collection URL path: of one namespace, or of all."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        plural = self.kind.lower() + "s"
        return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


POD = Kind("Pod", "v1")
DEPLOYMENT = Kind("Deployment", "apps/v1")
SERVICE = Kind("Service", "v1")


# -- models -----------------------------------------------------------------------------------------


class ListQuery(BaseModel):
    """Which objects to list."""

    namespace: str | None = Field(
        default=None, pattern=DNS_LABEL_PATTERN, max_length=63, description="Only this namespace (default: all)."
    )
    label_selector: str | None = Field(
        default=None, max_length=1024, description="A label selector, as kubectl -l takes it (app=web,tier!=db)."
    )


class ApplyQuery(BaseModel):
    """How to apply."""

    dry_run: bool = Field(default=False, description="Validate and answer the result, but store nothing.")
    force: bool = Field(default=False, description="Take over fields another manager owns instead of a CONFLICT.")


class Manifest(BaseModel):
    """A Kubernetes object, as JSON or YAML (application/json, application/yaml or text/yaml)."""

    model_config = ConfigDict(extra="allow")

    apiVersion: str = Field(description="v1 for pods and services, apps/v1 for deployments.")
    kind: str = Field(description="Pod, Deployment or Service: the kind of the endpoint.")
    metadata: dict[str, Any] = Field(description="name (required) and namespace (default: default).")


class Applied(BaseModel):
    """The object as the API server stored it (or would, in a dry run)."""

    name: str
    namespace: str
    kind: str
    uid: str | None = None
    resource_version: str | None = None
    created: bool = Field(description="True when the apply created the object, false when it changed one.")
    dry_run: bool
    message: str
    object: dict[str, Any] = Field(description="The full object the API server answered.")


# -- calls ------------------------------------------------------------------------------------------


async def _call(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """One API call as the user (status, body), failures a client can act on turned into the contract's codes."""
    try:
        return await as_user().request_with_status(method, path, timeout=LIST_TIMEOUT, **kwargs)
    except KubeError as exc:
        raise await _refusal(exc) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise unreachable(exc) from None


async def _refusal(exc: KubeError) -> APIError:
    """The shared mapping of API-server refusals, with what these endpoints add: a hint on conflicts."""
    error = await refusal(exc)
    if error.code == CONFLICT:
        error.details = "another manager owns these fields; apply with ?force=true to take them"
    return error


async def _list(kind_path: str, query: ListQuery) -> list[dict[str, Any]]:
    params: list[tuple[str, Any]] = []
    if query.label_selector:
        params.append(("labelSelector", query.label_selector))
    _, body = await _call("GET", kind_path, query=params)
    items: list[dict[str, Any]] = body.get("items") or []
    return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))


@blueprint.get("/pods")
@require("viewer")
@tag(["kubernetes"])
@validate_querystring(ListQuery)
@validate_response(Success[PodList])
@document_response(Failure, 503)
async def list_pods(query_args: ListQuery) -> Success[PodList]:
    """Pods of every namespace (or of ?namespace=), with kubectl's columns."""
    now = datetime.now(UTC)
    items = await _list(POD.collection(query_args.namespace), query_args)
    return Success[PodList](data=PodList(pods=[pod_view(p, now) for p in items]))


@blueprint.get("/deployments")
@require("viewer")
@tag(["kubernetes"])
@validate_querystring(ListQuery)
@validate_response(Success[DeploymentList])
@document_response(Failure, 503)
async def list_deployments(query_args: ListQuery) -> Success[DeploymentList]:
    """Deployments of every namespace (or of ?namespace=)."""
    now = datetime.now(UTC)
    items = await _list(DEPLOYMENT.collection(query_args.namespace), query_args)
    return Success[DeploymentList](data=DeploymentList(deployments=[deployment_view(d, now) for d in items]))


@blueprint.get("/services")
@require("viewer")
@tag(["kubernetes"])
@validate_querystring(ListQuery)
@validate_response(Success[ServiceList])
@document_response(Failure, 503)
async def list_services(query_args: ListQuery) -> Success[ServiceList]:
    """Services of every namespace (or of ?namespace=)."""
    now = datetime.now(UTC)
    items = await _list(SERVICE.collection(query_args.namespace), query_args)
    return Success[ServiceList](data=ServiceList(services=[service_view(s, now) for s in items]))


@blueprint.get("/crds")
@require("viewer")
@tag(["kubernetes"])
@validate_response(Success[CRDList])
@document_response(Failure, 503)
async def list_crds() -> Success[CRDList]:
    """Every CustomResourceDefinition of the cluster."""
    now = datetime.now(UTC)
    _, body = await _call("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    items = sorted(body.get("items") or [], key=lambda c: c["metadata"]["name"])
    return Success[CRDList](data=CRDList(crds=[crd_view(c, now) for c in items]))


# -- apply ------------------------------------------------------------------------------------------


def _bad(message: str, details: str | None = None) -> APIError:
    return APIError(INVALID_INPUT_STATUS, INVALID_INPUT, message, details)


async def manifest(expected: Kind) -> dict[str, Any]:
    """The request body as one object of the ``expected`` kind, from JSON or YAML; INVALID_INPUT otherwise."""
    content_type = (request.mimetype or "").lower()
    raw = await request.get_data(as_text=False)
    if not raw or not raw.strip():
        raise _bad("the request body is empty; send a manifest in JSON or YAML")
    if content_type in JSON_TYPES:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _bad("the body is not valid JSON", str(exc)) from None
    elif content_type in YAML_TYPES:
        try:
            documents = [d for d in yaml.safe_load_all(raw) if d is not None]
        except yaml.YAMLError as exc:
            raise _bad("the body is not valid YAML", str(exc)) from None
        if len(documents) != 1:
            raise _bad(f"send exactly one object per request; the YAML holds {len(documents)}")
        obj = documents[0]
    else:
        raise APIError(
            415,
            INVALID_INPUT,
            "send the manifest as application/json, application/yaml or text/yaml",
            f"Content-Type was {content_type or 'missing'}",
        )
    if not isinstance(obj, dict):
        raise _bad("the manifest must be an object with apiVersion, kind and metadata")
    if obj.get("kind") != expected.kind or obj.get("apiVersion") != expected.api_version:
        raise _bad(
            f"this endpoint applies {expected.kind} objects ({expected.api_version}); "
            f"the manifest is {obj.get('kind')!r} ({obj.get('apiVersion')!r})"
        )
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        raise _bad("metadata.name is required")
    namespace = metadata.setdefault("namespace", "default")
    if not isinstance(namespace, str) or not namespace:
        raise _bad("metadata.namespace must be a namespace name")
    # The API server owns these; sending them back (as kubectl get -o yaml gives them) would fail the apply.
    for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        metadata.pop(field, None)
    obj.pop("status", None)
    return obj


async def apply(expected: Kind, query: ApplyQuery) -> tuple[Success[Applied], int]:
    """Server-side apply of the request's manifest as the user; 201 when it created the object."""
    obj = await manifest(expected)
    meta = obj["metadata"]
    user = current_user()
    params: list[tuple[str, Any]] = [
        ("fieldManager", field_manager(user.username)),
        ("force", str(query.force).lower()),
    ]
    if query.dry_run:
        params.append(("dryRun", "All"))
    path = f"{expected.collection(meta['namespace'])}/{meta['name']}"
    status, stored = await _call("PATCH", path, query=params, body=obj, content_type="application/apply-patch+yaml")
    stored_meta = stored.get("metadata") or {}
    created = status == 201
    verb = ("would be " if query.dry_run else "") + ("created" if created else "configured")
    result = Applied(
        name=meta["name"],
        namespace=meta["namespace"],
        kind=expected.kind,
        uid=stored_meta.get("uid"),
        resource_version=stored_meta.get("resourceVersion"),
        created=created,
        dry_run=query.dry_run,
        message=f"{expected.kind} {meta['namespace']}/{meta['name']} {verb}",
        object=stored,
    )
    return Success[Applied](data=result), 201 if created and not query.dry_run else 200


def _apply_route(kind: Kind, name: str, doc: str) -> None:
    async def route(query_args: ApplyQuery) -> tuple[Success[Applied], int]:
        return await apply(kind, query_args)

    route.__name__ = name
    route.__doc__ = doc
    decorated: Any = route
    for status in (400, 403, 404, 409, 415):
        decorated = document_response(Failure, status)(decorated)
    decorated = validate_response(Success[Applied], 200)(decorated)
    decorated = validate_response(Success[Applied], 201)(decorated)
    decorated = document_request(Manifest)(decorated)
    decorated = validate_querystring(ApplyQuery)(decorated)
    decorated = tag(["kubernetes"])(decorated)
    decorated = require("admin")(decorated)
    blueprint.post(f"/{kind.kind.lower()}s")(decorated)


for _kind in (POD, DEPLOYMENT, SERVICE):
    _apply_route(
        _kind,
        f"apply_{_kind.kind.lower()}",
        f"Create or update a {_kind.kind.lower()} with server-side apply (JSON or YAML body).",
    )
