"""``PUT /images/{name}/upload`` of the node-local API: an upload Image's bytes, streamed into this host's cache.

The gateway streams the body of ``PUT /api/v1/images/{name}/upload`` here. The
body is the raw image file; it is written into the cache as it arrives (never
held whole: the node API's JSON body limit does not apply), hashed on the way,
fsynced, checked against ``spec.checksum`` when the Image gives one and with
``qemu-img info`` against ``spec.format``, and only then renamed into place;
this host's entry of the Image's ``status.hosts`` turns Ready. Answers:

- 201 ``{host, sha256, size, virtualSize, format}``
- 404 NOT_FOUND: no such Image; 409 CONFLICT: not an upload Image, being
  deleted, another upload of it under way, or a sha256 other than its checksum
- 422 INVALID_INPUT: not an image qemu-img reads, another format than
  ``spec.format``, or a qcow2 image with a backing file
- 507 INSUFFICIENT_STORAGE: the announced size (Content-Length) or the bytes
  so far would leave less than the reserve free (``--image-reserve``)
"""

from __future__ import annotations

from aiohttp import web

from vapor.agentapi.errors import CONFLICT, INSUFFICIENT_STORAGE, INVALID_INPUT, NOT_FOUND
from vapor.kube import KubeError
from vapor.model import Image

from ..controllers.images import ImageController
from ..host import imagecache
from .context import NodeContext
from .envelope import NodeAPIError, ok

CHUNK = 1 << 20
PROBLEM_STATUS = {
    imagecache.CHECKSUM_MISMATCH: (409, CONFLICT),
    imagecache.NO_ROOM: (507, INSUFFICIENT_STORAGE),
}


def _upload_image(controller: ImageController, name: str) -> Image:
    image = controller.informer.get(name)
    if image is None:
        raise NodeAPIError(404, NOT_FOUND, f"Image {name} does not exist")
    if image.metadata.deletion_timestamp is not None:
        raise NodeAPIError(409, CONFLICT, f"Image {name} is being deleted")
    if image.spec.source.upload is None:
        raise NodeAPIError(409, CONFLICT, f"Image {name} is not an upload Image (its spec.source is not upload)")
    return image


def routes(node: NodeContext) -> list[web.RouteDef]:
    """The upload route (only when the agent fetches Images: ``node.extras["images"]``)."""
    controller = node.extras.get("images")
    if not isinstance(controller, ImageController):
        return []
    busy: set[str] = set()

    async def upload(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        image = _upload_image(controller, name)
        if name in busy:
            raise NodeAPIError(409, CONFLICT, f"an upload of Image {name} to this host is under way")
        busy.add(name)
        try:
            cached = await controller.cache.receive(
                request.content.iter_chunked(CHUNK),
                image,
                controller.progress_of(image),
                total=request.content_length,
            )
        except imagecache.ImageProblem as exc:
            status, code = PROBLEM_STATUS.get(exc.reason, (422, INVALID_INPUT))
            raise NodeAPIError(status, code, exc.message) from None
        finally:
            busy.discard(name)
        try:
            await controller.report_ready(controller.informer.get(name) or image, cached)
        except KubeError as exc:  # the copy is there; the next reconcile reports it
            controller.queue.add_after(name, 1.0)
            message = f"the image is cached, but its status could not be written: {exc}"
            raise NodeAPIError(409, CONFLICT, message) from None
        return ok(
            {
                "host": node.config.node_name,
                "sha256": cached.sha256,
                "size": cached.size,
                "virtualSize": cached.virtual_size,
                "format": cached.format,
            },
            201,
        )

    return [web.put("/images/{name}/upload", upload)]
