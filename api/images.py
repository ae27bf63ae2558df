"""/api/v1/images: disk images the hosts fetch and VMs boot from, read from the watch cache.

An Image is cluster-wide and named by its name. Writes are made as the user
(field manager ``vapor-gateway:<user>``, the requested-by annotation, an
Event on the Image). An upload Image's bytes go through
``PUT /api/v1/images/{name}/upload``, streamed to one host's agent as they
arrive (see _uploads): that host holds it then, and VMs using it are placed
there.
"""

from __future__ import annotations

from quart import Blueprint, Response, request
from quart_schema import (
    document_request,
    document_response,
    tag,
    validate_querystring,
    validate_request,
    validate_response,
)
from werkzeug.exceptions import RequestEntityTooLarge

from vapor.agentapi.errors import ALREADY_EXISTS, CONFLICT, INVALID_INPUT
from vapor.kube import Conflict, NotFound
from vapor.model import Image, ImageSpec, ObjectMeta
from vapor.model.image import named, used_by
from vapor.model.names import REQUESTED_BY_ANNOTATION

from ._agentdocs import documents_agent_errors
from ._agents import agents
from ._errors import APIError
from ._guard import current_user, require
from ._hostscope import HostQuery, scoped_host
from ._imageschema import CreateImageRequest, ImageDeleteResult, ImageList, ImageView, RawImage, UploadResult
from ._lookups import find_image, image_not_found
from ._schema import Failure, Success
from ._state import gateway
from ._uploads import StreamedBody
from ._views import image_view
from ._writes import CACHE_CATCH_UP, as_user, field_manager, record_event

blueprint = Blueprint("images", __name__, url_prefix="/api/v1/images")
# How long the agent may take, once it has the whole upload, to verify it (sha256 is hashed on the way;
# fsync and qemu-img remain) before the gateway gives up.
UPLOAD_VERIFY_TIMEOUT = 300.0


@blueprint.get("")
@require("viewer")
@tag(["images"])
@document_response(Success[ImageList])
async def list_images() -> Response:
    """Every Image, with each host's copy and its progress (phase, bytes, percent, reason)."""
    return gateway().image_bodies.response()


@blueprint.get("/<name>")
@require("viewer")
@tag(["images"])
@validate_response(Success[ImageView])
@document_response(Failure, 404)
async def get_image(name: str) -> Success[ImageView]:
    """One Image by name, with each host's copy and its progress."""
    image = gateway().images.get(name)
    if image is None:
        raise image_not_found(name)
    return Success[ImageView](data=image_view(image))


@blueprint.post("")
@require("admin")
@tag(["images"])
@validate_request(CreateImageRequest)
@validate_response(Success[ImageView], 201)
@document_response(Failure, 400)
@document_response(Failure, 409)
async def create_image(data: CreateImageRequest) -> tuple[Success[ImageView], int]:
    """Create an Image (admin).

    ``source`` is exactly one of ``http`` ({url, ca_bundle}; needs ``checksum``,
    the file's sha256), ``host_path`` ({path}: a file already on the hosts) or
    ``upload`` ({}: then send the file with PUT /api/v1/images/{name}/upload).
    Hosts fetch it when a VM placed there needs it, or ahead of time when
    ``prefetch`` selects them; 409 ALREADY_EXISTS when the name is taken.
    """
    user = current_user()
    state = gateway()
    spec = ImageSpec.model_validate(data.model_dump(exclude={"name"}, exclude_none=True))
    new = Image(
        metadata=ObjectMeta(name=data.name, annotations={REQUESTED_BY_ANNOTATION: user.username}),
        spec=spec,
    )
    try:
        created = await as_user().resources(Image).create(new, field_manager=field_manager(user.username))
    except Conflict:
        raise APIError(409, ALREADY_EXISTS, f"an image named {data.name!r} already exists") from None
    note = f"User {user.username!r} created the image through the REST API"
    await record_event(created, reason="Created", note=note, action="Create")
    uid = created.metadata.uid or ""
    await state.images.wait_for(lambda: state.images.by_uid(uid) is not None, CACHE_CATCH_UP)
    return Success[ImageView](data=image_view(created)), 201


@blueprint.delete("/<name>")
@require("admin")
@tag(["images"])
@validate_response(Success[ImageDeleteResult])
@document_response(Failure, 404)
@document_response(Failure, 409)
async def delete_image(name: str) -> Success[ImageDeleteResult]:
    """Delete an Image (admin); 409 CONFLICT naming the VMs that use it, and nothing is deleted then.

    The hosts drop their cached copies on their own once it is gone.
    """
    user = current_user()
    image = await find_image(name)
    using = used_by(name, gateway().vms.items())
    if using:
        raise APIError(
            409,
            CONFLICT,
            f"image {name!r} is used by {len(using)} virtual machine(s): {named(using)}; delete them first",
        )
    await record_event(
        image, reason="DeleteRequested", note=f"User {user.username!r} deleted the image through the REST API",
        action="Delete",
    )  # fmt: skip
    try:
        await as_user().resources(Image).delete(name)
    except NotFound:
        raise image_not_found(name) from None
    return Success[ImageDeleteResult](
        data=ImageDeleteResult(id=image.metadata.uid or "", name=name, message="deletion requested")
    )


@blueprint.put("/<name>/upload")
@require("admin")
@tag(["images"])
@validate_querystring(HostQuery)
@document_request(RawImage)
@validate_response(Success[UploadResult], 201)
@document_response(Failure, 404)
@document_response(Failure, 409)
@document_response(Failure, 413)
@document_response(Failure, 422)
@document_response(Failure, 507)
@documents_agent_errors
async def upload_image(name: str, query_args: HostQuery) -> tuple[Success[UploadResult], int]:
    """Upload an upload Image's file to one host (admin): the raw bytes as the request body.

    The body is passed on to the host's agent as it arrives, never held whole;
    it may be at most the gateway's UPLOAD_MAX_BYTES (413 above it; the JSON
    body limit does not apply). The agent verifies it (``checksum`` when the
    Image has one: 409 on a mismatch; what qemu-img finds against ``format``:
    422) before that host's copy turns Ready; 507 when the host has no room.
    The host is ``?host=``, else the default host. Upload again to put the
    image on more hosts.
    """
    user = current_user()
    body = request.body
    limit = body.limit if isinstance(body, StreamedBody) else None
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)  # said before a byte is read, or a host is asked
    image = await find_image(name)
    if image.spec.source.upload is None:
        raise APIError(409, CONFLICT, f"image {name!r} is not an upload image: its hosts fetch it from its source")
    if image.metadata.deletion_timestamp is not None:
        raise APIError(409, CONFLICT, f"image {name!r} is being deleted")
    host = scoped_host(query_args.host)
    try:
        answer = await agents().stream(
            host,
            "PUT",
            f"/images/{name}/upload",
            body,
            length=request.content_length,
            idle_timeout=UPLOAD_VERIFY_TIMEOUT,
        )
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    except APIError:
        if isinstance(body, StreamedBody) and body.received > body.limit:  # the agent saw the stream stop
            raise _too_large(limit) from None
        raise
    result = UploadResult(
        host=str(answer.get("host") or host.name),
        sha256=str(answer["sha256"]),
        size=int(answer["size"]),
        virtual_size=int(answer.get("virtualSize", answer.get("virtual_size", 0))),
        format=str(answer.get("format") or image.spec.format),
    )
    await record_event(
        image, reason="Uploaded", action="Upload",
        note=f"User {user.username!r} uploaded {result.size} bytes to host {result.host} through the REST API",
    )  # fmt: skip
    return Success[UploadResult](data=result), 201


def _too_large(limit: int | None) -> APIError:
    most = f"at most {limit} bytes" if limit is not None else "smaller"
    return APIError(413, INVALID_INPUT, f"the upload is too large: an upload may be {most} (UPLOAD_MAX_BYTES)")
