"""Request and response models of /api/v1/images: a new Image, the Image as REST shows it, an upload's result.

The request models take the model's patterns and limits (vapor.model.image),
so the REST API and the CRD accept the same values; the rules the CRD states
in CEL (exactly one source, a checksum for http) are checked here too, so a
bad body is refused with the field named before anything is written.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from vapor.model.cloudinit import DNS_SUBDOMAIN_PATTERN
from vapor.model.image import (
    MAX_CA_BUNDLE,
    PLAIN_ABSOLUTE_PATH_PATTERN,
    SHA256_PATTERN,
    URL_PATTERN,
    ImageFormat,
)

from ._schema import Strict
from ._uploads import RawBody


class HTTPSourceRequest(Strict):
    """Download from an http or https URL every host that needs the image can reach."""

    url: str = Field(pattern=URL_PATTERN, max_length=2048, description="URL of the image file (http or https).")
    ca_bundle: str | None = Field(
        default=None,
        max_length=MAX_CA_BUNDLE,
        description="PEM certificates to trust for an https URL instead of the hosts' own trust store.",
    )


class HostPathSourceRequest(Strict):
    """A file already on the hosts, in one of their image folders."""

    path: str = Field(
        pattern=PLAIN_ABSOLUTE_PATH_PATTERN,
        max_length=4096,
        description="Absolute path of the file on each host (in one of the agent's --image-dir folders).",
    )


class UploadSourceRequest(Strict):
    """The bytes come through PUT /api/v1/images/{name}/upload, to one host at a time."""


class ImageSourceRequest(Strict):
    """Where the image's bytes come from: exactly one of http, host_path or upload."""

    http: HTTPSourceRequest | None = None
    host_path: HostPathSourceRequest | None = None
    upload: UploadSourceRequest | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("http", "host_path", "upload") if getattr(self, name) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            raise ValueError(f"give exactly one of http, host_path or upload (found {found})")
        return self


class PrefetchRequest(Strict):
    """Hosts that fetch the image ahead of need."""

    host_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels a Host must carry; empty ({}) selects every host."
    )


class CreateImageRequest(Strict):
    """A new Image (cluster-wide: its name is unique in the cluster).

    An http image needs ``checksum`` (the sha256 of the file as 64 lowercase
    hex digits); hosts never use a copy whose hash differs. An upload image is
    filled afterwards with PUT /api/v1/images/{name}/upload.
    """

    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="Name of the Image (a DNS subdomain).")
    source: ImageSourceRequest
    checksum: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        validate_default=True,  # so that a missing one is checked against the source
        description="sha256 of the image file, 64 lowercase hex digits; required for an http source.",
    )
    format: ImageFormat = Field(default="qcow2", description="qcow2, raw or iso: what qemu-img must find in the file.")
    prefetch: PrefetchRequest | None = Field(
        default=None, description="Fetch to the selected hosts ahead of need; without it a host fetches on first use."
    )

    @field_validator("checksum")
    @classmethod
    def _http_needs_checksum(cls, value: str | None, info: ValidationInfo) -> str | None:
        source = info.data.get("source")
        if value is None and source is not None and source.http is not None:
            raise ValueError("an http image needs checksum: the sha256 of the file, as 64 lowercase hex digits")
        return value


class ImageHostView(BaseModel):
    """One host's copy of the image, as its agent reports it."""

    host: str
    phase: str = Field(description="Pending, Fetching, Verifying, Ready, Failed or Refused.")
    bytes: int | None = Field(default=None, description="Bytes fetched so far (the file's size once Ready).")
    total_bytes: int | None = None
    percent: int | None = Field(default=None, description="Progress of the fetch, 0 to 100.")
    sha256: str | None = None
    virtual_size: int | None = None
    reason: str | None = Field(default=None, description="Why the copy Failed or was Refused.")
    message: str | None = None
    updated_at: str | None = None


class ImageView(BaseModel):
    """An Image: what was asked (source, checksum, format) and how the fleet holds it."""

    id: str = Field(description="Stable id (the resource's uid).")
    name: str
    source: dict[str, Any] = Field(description="One of http {url, ca_bundle}, host_path {path}, upload {}.")
    checksum: str | None
    format: str
    prefetch: dict[str, Any] | None
    phase: str = Field(
        description="Pending until a host holds a verified copy, Ready once one does, Failed, Terminating."
    )
    ready_hosts: int = Field(description="Hosts that hold a verified copy.")
    size: int | None = Field(description="Bytes of the image file, once verified.")
    virtual_size: int | None = Field(description="Bytes of the disk it holds (qemu-img's virtual size).")
    sha256: str | None
    fetch_hosts: list[str] = Field(description="Hosts asked to fetch it: where VMs using it are placed or moving.")
    hosts: list[ImageHostView] = Field(description="Each host's copy, with its progress.")
    conditions: list[dict[str, Any]] = Field(description="InUse names the VMs using the image.")
    requested_by: str | None = Field(description="The REST user who created it, if made through REST.")
    created_at: str | None
    deleting: bool


class ImageList(BaseModel):
    """Every Image."""

    images: list[ImageView]
    count: int


class ImageDeleteResult(BaseModel):
    """A deletion that was asked for (hosts drop their cached copies on their own)."""

    id: str
    name: str
    message: str


class RawImage(RawBody):
    """The image file itself (application/octet-stream), streamed to the host's agent as it arrives."""


class UploadResult(BaseModel):
    """The host's verified copy of an uploaded image."""

    host: str = Field(description="Name of the Host that holds it now.")
    sha256: str
    size: int = Field(description="Bytes received.")
    virtual_size: int = Field(description="Bytes of the disk it holds (qemu-img's virtual size).")
    format: str
