"""CloudInitSpec: a VM's first-boot configuration, given to cloud-init as a NoCloud seed."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from ._meta import Model

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# An OpenSSH public key on one line: type, base64 key, optional comment.
SSH_KEY_PATTERN = (
    r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}( [^\n\r]*)?$"
)
HOSTNAME_PATTERN = DNS_SUBDOMAIN_PATTERN
# cloud-init documents bigger than this are refused (a seed ISO is no place for payloads).
MAX_CLOUD_INIT = 65536


class SecretKeyRef(Model):
    """A key of a Secret in the VM's namespace."""

    name: str = Field(description="Name of the Secret.", pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    key: str = Field(default="userdata", description="Key in the Secret's data.", max_length=253)


class CloudInitSpec(Model):
    """First-boot configuration for the guest, given to cloud-init as a NoCloud seed (a CD-ROM labelled cidata).

    meta-data carries instance-id (the VM's uid) and local-hostname (hostname, else the
    VM's name). A change is written to the seed at once and read by the guest at its
    next boot (condition RestartRequired says so while the guest runs the old one).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.userData) && has(self.userDataSecretRef))",
                    "message": "give userData or userDataSecretRef, not both",
                }
            ]
        }
    )

    user_data: str | None = Field(
        default=None,
        description="user-data: a #cloud-config YAML document (or a script starting with #!), at most 64 KiB.",
        max_length=MAX_CLOUD_INIT,
    )
    user_data_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Take user-data from a Secret in the VM's namespace (for passwords and keys kept out of the VM).",
    )
    network_data: str | None = Field(
        default=None,
        description="network-config (cloud-init's network config version 1 or 2, YAML); DHCP on the first card when left out.",
        max_length=MAX_CLOUD_INIT,
    )
    ssh_authorized_keys: list[Annotated[str, Field(pattern=SSH_KEY_PATTERN, max_length=16384)]] | None = Field(
        default=None,
        max_length=64,
        description="OpenSSH public keys for the guest's default user (debian on Debian images), added to user-data.",
    )
    hostname: str | None = Field(
        default=None,
        description="The guest's hostname (meta-data local-hostname); the VM's name when left out.",
        pattern=HOSTNAME_PATTERN,
        max_length=253,
    )
