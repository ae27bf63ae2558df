"""What a client may ask of Docker, checked strictly before anything reaches the daemon.

The request bodies of ``POST /docker/containers`` and ``POST /docker/images/pull``
(field names as the contract spells them: ``portBindings``, ``hostPort``,
``imageName``) and the grammar of the names they carry. The gateway validates
with these models (so the OpenAPI document shows them) and the agent validates
again before it calls the Docker daemon: a request that passes is one the
daemon can parse, so a failure after that is the daemon's (DOCKER_ERROR).

Nothing here imports the Docker SDK.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A container name as the daemon accepts it (Docker's own rule), with a length cap.
CONTAINER_NAME_PATTERN = r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}$"
# A container id, id prefix or name in a URL path (no slash, no leading dash or dot).
CONTAINER_REF_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"

# Image references, after the distribution/reference grammar.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_TAG = TAG_PATTERN[1:-1]
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_NAME_RE = re.compile(rf"^{_NAME}$")
IMAGE_REFERENCE_RE = re.compile(rf"^{_NAME}(?::{_TAG})?(?:@{_DIGEST})?$")
MAX_IMAGE_NAME = 255

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
CONTAINER_PORT_RE = re.compile(r"^([0-9]{1,5})(?:/(tcp|udp|sctp))?$")
MAX_ENV = 256
MAX_ENV_ENTRY = 32 * 1024
MAX_PORTS = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _image_reference(value: str) -> str:
    """``value`` if it is an image reference (name[:tag][@digest]); ValueError otherwise."""
    if not IMAGE_REFERENCE_RE.match(value):
        raise ValueError(
            f"{value!r} is not an image reference: write [registry[:port]/]name[:tag][@digest], "
            "lower-case path components, for example nginx:latest or 127.0.0.1:5000/team/app:v1"
        )
    return value


def _port(text: str, what: str) -> int:
    number = int(text)
    if not 1 <= number <= 65535:
        raise ValueError(f"{what} {text} is out of range: a port is 1 to 65535")
    return number


class PortBinding(_Strict):
    """Where on the host a container port is published."""

    hostPort: str = Field(description='Host port, 1 to 65535, as a string ("8080") or a number.', examples=["8080"])
    hostIp: str | None = Field(
        default=None, description="Host address to bind (default: every address).", examples=["127.0.0.1"]
    )

    @field_validator("hostPort", mode="before")
    @classmethod
    def _host_port(cls, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("hostPort must be a port number, 1 to 65535, as a string or a number")
        text = str(value)
        if not text.isascii() or not text.isdigit() or len(text) > 5:
            raise ValueError(f"hostPort {text!r} is not a port number (1 to 65535)")
        return str(_port(text, "hostPort"))

    @field_validator("hostIp")
    @classmethod
    def _host_ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"hostIp {value!r} is not an IPv4 or IPv6 address") from None


class CreateContainerRequest(_Strict):
    """A new Docker container (created, not started: start it with POST /docker/containers/{id}/start)."""

    name: str | None = Field(
        default=None,
        pattern=CONTAINER_NAME_PATTERN,
        description="Container name: a letter or digit, then letters, digits, _ . - (2 to 128 characters).",
        examples=["my-nginx"],
    )
    image: str = Field(
        min_length=1,
        max_length=512,
        description="Image reference: [registry[:port]/]name[:tag][@digest]; the image must be on the host.",
        examples=["nginx:latest"],
    )
    env: list[str] = Field(
        default_factory=list,
        max_length=MAX_ENV,
        description="Environment variables, each NAME=value.",
        examples=[["ENV=production"]],
    )
    portBindings: dict[str, list[PortBinding]] = Field(
        default_factory=dict,
        max_length=MAX_PORTS,
        description='Container port ("80/tcp", "53/udp", or "80" for tcp) to the host ports it is published on.',
        examples=[{"80/tcp": [{"hostPort": "8080"}]}],
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _image_reference(value)

    @field_validator("env")
    @classmethod
    def _env(cls, values: list[str]) -> list[str]:
        for index, entry in enumerate(values):
            name, equals, _ = entry.partition("=")
            if not equals or not ENV_NAME_RE.match(name):
                raise ValueError(f"env[{index}] {entry[:60]!r} must read NAME=value, NAME of letters, digits and _")
            if "\x00" in entry or len(entry) > MAX_ENV_ENTRY:
                raise ValueError(f"env[{index}] holds a NUL byte or is longer than {MAX_ENV_ENTRY} characters")
        return values

    @field_validator("portBindings")
    @classmethod
    def _ports(cls, value: dict[str, list[PortBinding]]) -> dict[str, list[PortBinding]]:
        normal: dict[str, list[PortBinding]] = {}
        for key, bindings in value.items():
            match = CONTAINER_PORT_RE.match(key)
            if not match:
                raise ValueError(f"port {key!r} must read PORT or PORT/PROTOCOL (tcp, udp or sctp), e.g. 80/tcp")
            port = _port(match.group(1), "container port")
            if not 1 <= len(bindings) <= 8:
                raise ValueError(f"port {key!r} needs 1 to 8 host bindings")
            normal[f"{port}/{match.group(2) or 'tcp'}"] = bindings
        return normal

    def host_ports(self) -> dict[str, list[tuple[str, int] | int]]:
        """The bindings in the Docker SDK's ``ports=`` form."""
        return {
            key: [(b.hostIp, int(b.hostPort)) if b.hostIp else int(b.hostPort) for b in bindings]
            for key, bindings in self.portBindings.items()
        }


class PullImageRequest(_Strict):
    """An image to pull from its registry (Docker Hub when the name names none)."""

    imageName: str = Field(
        min_length=1,
        max_length=MAX_IMAGE_NAME,
        description="Repository, with its registry when not Docker Hub: nginx, 127.0.0.1:5000/team/app.",
        examples=["nginx"],
    )
    tag: str = Field(default="latest", pattern=TAG_PATTERN, description="Tag to pull.", examples=["latest"])

    @field_validator("imageName")
    @classmethod
    def _name(cls, value: str) -> str:
        if not IMAGE_NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a repository name: write [registry[:port]/]name without a tag "
                "(the tag goes in 'tag'), lower-case path components"
            )
        return value
