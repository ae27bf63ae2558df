"""The cloud-init NoCloud documents of a VirtualMachine: meta-data, user-data and network-config (no I/O).

Shared by the agent, which writes them into the VM's seed ISO, and the gateway,
which refuses a VM whose documents cannot be made before it is created.

meta-data names the instance (``instance-id``: the VM's uid, so cloud-init
runs its first-boot work once per VM) and its hostname. user-data is the
user's document (from the spec or a Secret) with ``sshAuthorizedKeys``
merged in: added to the ``ssh_authorized_keys`` of a ``#cloud-config``
document (the user's own keys kept), or, for any other kind of user-data (a
script), sent along as a ``#cloud-config`` part of a MIME multipart document;
without user-data the keys make a ``#cloud-config`` of their own.

:class:`CloudInitError` says why the documents cannot be made; its message
never quotes the documents (they may hold secrets).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from email import message_from_string
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import yaml

from vapor.model import VirtualMachine
from vapor.model.cloudinit import MAX_CLOUD_INIT

CLOUD_CONFIG = "#cloud-config"
INVALID = "InvalidCloudInit"
TOO_LARGE = "CloudInitTooLarge"
SECRET_NOT_FOUND = "CloudInitSecretNotFound"
# What cloud-init takes each kind of user-data for (by its first line), when it becomes a MIME part.
_PART_TYPES = (
    ("#!", "x-shellscript"),
    ("#include", "x-include-url"),
    ("#cloud-boothook", "cloud-boothook"),
    ("#part-handler", "part-handler"),
    ("#cloud-config-archive", "cloud-config-archive"),
    ("## template: jinja", "jinja2"),
)


class CloudInitError(Exception):
    """The documents cannot be made; ``reason`` goes into the VM's condition.

    ``waiting``: what is missing may yet come (a Secret not created yet), so the VM waits for it.
    """

    def __init__(self, reason: str, message: str, *, waiting: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.waiting = waiting


@dataclass(frozen=True)
class Documents:
    """The three documents of a NoCloud seed (network-config only when given)."""

    meta_data: str
    user_data: str
    network_config: str | None

    def digest(self) -> str:
        """A short hash of all three: the seed on disk is rebuilt when it changes."""
        h = hashlib.sha256()
        for part in (self.meta_data, self.user_data, self.network_config):
            data = (part if part is not None else "\x00none").encode()
            h.update(len(data).to_bytes(8, "big") + data)
        return h.hexdigest()[:16]


def secret_missing(name: str, namespace: str) -> CloudInitError:
    """The error of a userDataSecretRef whose Secret does not exist (yet)."""
    return CloudInitError(SECRET_NOT_FOUND, f"Secret {name!r} does not exist in namespace {namespace!r}", waiting=True)


def secret_user_data(data: Mapping[str, str | bytes] | None, name: str, key: str, namespace: str) -> str:
    """The user-data under ``key`` of a Secret's (base64) ``data``; raises CloudInitError."""
    value = (data or {}).get(key)
    if value is None:
        message = f"Secret {name!r} in namespace {namespace!r} has no key {key!r}"
        raise CloudInitError(SECRET_NOT_FOUND, message, waiting=True)
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise CloudInitError(INVALID, f"key {key!r} of Secret {name!r} is not UTF-8 text") from None


def is_cloud_config(text: str) -> bool:
    """Whether ``text`` claims to be a #cloud-config document (its first line says so)."""
    return text.split("\n", 1)[0].rstrip() == CLOUD_CONFIG


def cloud_config_problem(text: str) -> str | None:
    """Why ``text``, when it claims to be #cloud-config, is not a valid one (a YAML mapping), else None."""
    if not is_cloud_config(text):
        return None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"user-data claims #cloud-config but is not valid YAML{where}"
    if loaded is not None and not isinstance(loaded, dict):
        return "user-data claims #cloud-config but its YAML is not a mapping of keys to values"
    return None


def _merge_cloud_config(text: str, keys: list[str]) -> str:
    config = yaml.safe_load(text) or {}
    present = config.get("ssh_authorized_keys")
    if present is not None and not isinstance(present, list):
        raise CloudInitError(INVALID, "user-data's ssh_authorized_keys is not a list")
    merged = list(present or [])
    merged += [key for key in keys if key not in merged]
    config["ssh_authorized_keys"] = merged
    return CLOUD_CONFIG + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _keys_only(keys: list[str]) -> str:
    return CLOUD_CONFIG + "\n" + yaml.safe_dump({"ssh_authorized_keys": keys}, sort_keys=False)


def _part(text: str) -> Message:
    subtype = next((sub for prefix, sub in _PART_TYPES if text.startswith(prefix)), "plain")
    return MIMEText(text, subtype, "utf-8")


def _multipart(user_data: str, keys: list[str]) -> str:
    if user_data.lstrip().lower().startswith("content-type:"):
        given = message_from_string(user_data)
        parts: list[Message] = list(given.get_payload()) if given.is_multipart() else [given]  # type: ignore[arg-type]
    else:
        parts = [_part(user_data)]
    out = MIMEMultipart()
    for part in [*parts, MIMEText(_keys_only(keys), "cloud-config", "utf-8")]:
        out.attach(part)
    return out.as_string()


def _within_limit(text: str, how: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CLOUD_INIT:
        raise CloudInitError(TOO_LARGE, f"user-data is {size} bytes{how}; at most {MAX_CLOUD_INIT} are allowed")


def user_data(given: str | None, keys: list[str]) -> str:
    """user-data with ``keys`` merged in (see the module's description); raises :class:`CloudInitError`."""
    if given is not None:
        _within_limit(given, "")  # before any parsing: a large document costs nothing to refuse
        problem = cloud_config_problem(given)
        if problem is not None:
            raise CloudInitError(INVALID, problem)
    if given is None:
        text = _keys_only(keys) if keys else CLOUD_CONFIG + "\n"
    elif not keys:
        text = given
    elif is_cloud_config(given):
        text = _merge_cloud_config(given, keys)
    else:
        text = _multipart(given, keys)
    _within_limit(text, " with the SSH keys merged in")
    return text


def documents(vm: VirtualMachine, given_user_data: str | None) -> Documents:
    """The seed's documents for ``vm``; ``given_user_data`` is spec.cloudInit's userData or its Secret's value."""
    spec = vm.spec.cloud_init
    if spec is None:
        raise ValueError("the VM has no cloudInit")
    meta = {"instance-id": vm.metadata.uid or "", "local-hostname": spec.hostname or vm.name}
    return Documents(
        meta_data=yaml.safe_dump(meta, sort_keys=False),
        user_data=user_data(given_user_data, list(spec.ssh_authorized_keys or [])),
        network_config=spec.network_data,
    )
