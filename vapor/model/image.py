"""Image: a disk image the fleet's hosts can boot VMs from (cluster-scoped).

An Image says where its bytes come from (an http or https URL, a file already
on the hosts, or an upload through the REST API), what they must hash to and
what format they are. Each host's agent fetches the image into its own
content-addressed cache when a VM placed there needs it (or ahead of time,
when ``spec.prefetch`` selects the host) and reports its progress in its own
entry of ``status.hosts``; a VM's disk is then a copy-on-write overlay on that
cached copy, so the image itself is never written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import ConfigDict, Field, JsonValue

from ._meta import Condition, Model, conditions_field
from ._resource import AGE, CRDInfo, PrinterColumn, Resource
from .virtualmachine import VirtualMachine

ImageFormat = Literal["qcow2", "raw", "iso"]
# The Image as a whole (operator): Pending until a host holds it, Ready once one does,
# Failed when its content cannot be used anywhere (checksum or format mismatch, a URL that is refused).
ImagePhase = Literal["Pending", "Ready", "Failed", "Terminating"]
# One host's copy (that host's agent). Refused: the host will not take it (too large for its free space,
# or a hostPath outside its image folders); Failed: the content is wrong or cannot be fetched.
HostImagePhase = Literal["Pending", "Fetching", "Verifying", "Ready", "Failed", "Refused"]
SHA256_PATTERN = r"^[0-9a-f]{64}$"
URL_PATTERN = r"^https?://[^\s]+$"
PLAIN_ABSOLUTE_PATH_PATTERN = r"^(/[^/\x00]+)+$"
MAX_CA_BUNDLE = 65536

_IMMUTABLE: dict[str, JsonValue] = {
    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable; make a new Image"}]
}


class HTTPSource(Model):
    """An image the hosts download over http or https."""

    url: str = Field(
        description="URL of the image file; every host that needs the image must be able to reach it.",
        pattern=URL_PATTERN,
        max_length=2048,
    )
    ca_bundle: str | None = Field(
        default=None,
        description="PEM certificates to trust for an https URL instead of the host's own trust store.",
        max_length=MAX_CA_BUNDLE,
    )


class HostPathSource(Model):
    """An image file already on the hosts (for example on shared storage)."""

    path: str = Field(
        description=(
            "Absolute path of the file on each host. It must be in one of the host's image folders "
            "(the agent's --image-dir, by default /var/lib/vapor/images and /var/lib/libvirt/images); "
            "the host's entry is Refused otherwise. The agent copies it into its cache and never changes it."
        ),
        pattern=PLAIN_ABSOLUTE_PATH_PATTERN,
        max_length=4096,
    )


class UploadSource(Model):
    """An image whose bytes are sent through the REST API (PUT /api/v1/images/{name}/upload)."""


class ImageSource(Model):
    """Where the image's bytes come from: exactly one of http, hostPath or upload."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.http), has(self.hostPath), has(self.upload)].filter(x, x).size() == 1",
                    "message": "an image source needs exactly one of http, hostPath or upload",
                }
            ]
        }
    )

    http: HTTPSource | None = Field(default=None, description="Download from an http or https URL.")
    host_path: HostPathSource | None = Field(default=None, description="Copy a file already on the hosts.")
    upload: UploadSource | None = Field(
        default=None, description="Filled by an upload through the REST API (write {} here)."
    )


class ImagePrefetch(Model):
    """Hosts that fetch the image before any VM there needs it."""

    host_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Labels a Host must carry to prefetch the image; empty ({}) selects every host.",
    )


class ImageSpec(Model):
    """The image a person wants the fleet to hold."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.source.http) || has(self.checksum)",
                    "message": "an http image needs checksum (the sha256 of the file, as hex)",
                }
            ]
        }
    )

    source: ImageSource = Field(
        description="Where the bytes come from: http, hostPath or upload (immutable).",
        json_schema_extra=_IMMUTABLE,
    )
    checksum: str | None = Field(
        default=None,
        description=(
            "sha256 of the image file, 64 lowercase hex digits (immutable). Required for http; a host "
            "never uses a copy whose hash differs. For an upload, checked when given."
        ),
        pattern=SHA256_PATTERN,
        json_schema_extra=_IMMUTABLE,
    )
    format: ImageFormat = Field(
        default="qcow2",
        description=(
            "qcow2, raw or iso (immutable). What qemu-img reports of the file must match, or the host's "
            "copy fails with reason FormatMismatch. An iso is attached as a CD-ROM (disks[].cdrom)."
        ),
        json_schema_extra=_IMMUTABLE,
    )
    prefetch: ImagePrefetch | None = Field(
        default=None,
        description="Fetch the image to the selected hosts ahead of need; without it a host fetches on first use.",
    )


class ImageHostStatus(Model):
    """One host's copy of the image, written by that host's agent (its own field manager)."""

    host: str = Field(description="Name of the Host.", max_length=253)
    phase: HostImagePhase = Field(
        description="Where the copy is: Pending, Fetching, Verifying, Ready, Failed, Refused."
    )
    bytes: int | None = Field(default=None, ge=0, description="Bytes fetched so far (the file's size once Ready).")
    total_bytes: int | None = Field(default=None, ge=0, description="Size of the file, when known.")
    percent: int | None = Field(default=None, ge=0, le=100, description="Progress of the fetch.")
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN, description="sha256 of the copy, once verified.")
    virtual_size: int | None = Field(
        default=None, ge=0, description="Size of the disk the image holds (qemu-img's virtual size), once verified."
    )
    reason: str | None = Field(default=None, max_length=128, description="Why the copy Failed or was Refused.")
    message: str | None = Field(default=None, max_length=4096, description="What is happening, for people.")
    updated_at: str | None = Field(default=None, description="When this entry last changed (RFC 3339).")


class ImageStatus(Model):
    """The image as the fleet holds it: a summary by the operator, one entry per host by the agents."""

    phase: ImagePhase | None = Field(default=None, description="Pending, Ready (on at least one host), Failed.")
    ready_hosts: int | None = Field(default=None, ge=0, description="Hosts that hold a verified copy.")
    size: int | None = Field(default=None, ge=0, description="Size of the image file in bytes.")
    virtual_size: int | None = Field(default=None, ge=0, description="Size of the disk the image holds, in bytes.")
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN, description="sha256 of the verified file.")
    fetch_hosts: list[str] | None = Field(
        default=None,
        description=(
            "Hosts the operator has asked to fetch the image: where VMs using it are placed, and the "
            "targets of their migrations (the agents also fetch for spec.prefetch)."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    hosts: list[ImageHostStatus] | None = Field(
        default=None,
        description="Each host's copy, one entry per host, written by that host's agent.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["host"]},
    )
    conditions: list[Condition] | None = conditions_field("image")


class Image(Resource[ImageSpec, ImageStatus]):
    """A disk image (qcow2, raw or iso) that VMs boot from: disks[].image names it.

    Hosts fetch it into their cache when a VM placed there needs it, verify its
    sha256 and format, and give each VM a copy-on-write overlay on it. Deleting an
    Image that VMs still use waits (status condition InUse names them).
    """

    kind: Literal["Image"] = "Image"
    spec: ImageSpec = Field(description="The image a person wants the fleet to hold.")
    status: ImageStatus | None = Field(default=None, description="The image as the fleet holds it.")

    crd = CRDInfo(
        plural="images",
        scope="Cluster",
        short_names=("vimg",),
        printer_columns=(
            PrinterColumn("Format", ".spec.format"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Hosts", ".status.readyHosts", "integer", description="Hosts holding a verified copy."),
            PrinterColumn("Size", ".status.size", "integer", description="Bytes of the image file."),
            PrinterColumn("URL", ".spec.source.http.url", priority=1),
            AGE,
        ),
    )

    @property
    def phase(self) -> ImagePhase | None:
        """status.phase, or None before the operator has seen the Image."""
        return self.status.phase if self.status else None

    def on_host(self, host: str) -> ImageHostStatus | None:
        """The entry of ``host`` in status.hosts, or None."""
        return next((h for h in (self.status.hosts or []) if h.host == host), None) if self.status else None

    def ready_on(self) -> list[str]:
        """Names of the hosts that hold a verified copy."""
        return [h.host for h in (self.status.hosts or []) if h.phase == "Ready"] if self.status else []


# How many VMs a message names before it only counts the rest.
NAMED_IN_MESSAGE = 5


def images_of(vm: VirtualMachine) -> list[str]:
    """Names of the Images ``vm``'s disks use (overlays and CD-ROMs), each once, in disk order."""
    return list(dict.fromkeys(d.image for d in vm.spec.disks or [] if d.image))


def used_by(image: str, vms: Iterable[VirtualMachine]) -> list[VirtualMachine]:
    """The VMs whose disks use the Image named ``image`` (being deleted or not), by namespace and name."""
    found = [vm for vm in vms if image in images_of(vm)]
    return sorted(found, key=lambda vm: (vm.metadata.namespace or "", vm.name))


def named(vms: list[VirtualMachine]) -> str:
    """The first few VMs as namespace/name, and how many more: "ns/a, ns/b and 3 more"."""
    shown = ", ".join(f"{vm.metadata.namespace}/{vm.name}" for vm in vms[:NAMED_IN_MESSAGE])
    more = len(vms) - NAMED_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")
