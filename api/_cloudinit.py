"""The cloud-init of a new VM, checked before the VM is made: what the CRD's rules cannot see.

The CRD bounds userData and checks the keys and hostname; here the gateway
also makes user-data as the agent will (vapor.cloudinit: SSH keys merged in)
and refuses, with 422, #cloud-config that is not a YAML mapping, user-data
over 64 KiB once merged, and a userDataSecretRef whose Secret or key does
not exist. The Secret is read as the user (impersonation), so a VM can name
only a Secret its creator may read (403 otherwise). Messages never quote
user-data or the Secret's value.
"""

from __future__ import annotations

from vapor.agentapi.errors import INVALID_INPUT, PERMISSION_DENIED
from vapor.cloudinit import SECRET_NOT_FOUND, CloudInitError, secret_missing, secret_user_data, user_data
from vapor.kube import KubeError, NotFound
from vapor.kube._client import call
from vapor.model.cloudinit import CloudInitSpec

from ._errors import APIError, not_authorizing
from ._forbidden import FORBIDDEN, users_own
from ._schema import FieldError
from ._vmschema import CloudInitRequest
from ._writes import as_user

UNPROCESSABLE = 422
USER_DATA = "cloud_init.user_data"
SECRET_REF = "cloud_init.user_data_secret_ref"


def _refused(exc: CloudInitError, field: str) -> APIError:
    return APIError(UNPROCESSABLE, INVALID_INPUT, exc.message, fields=[FieldError(field=field, message=exc.message)])


async def _secret_value(namespace: str, name: str, key: str) -> str:
    try:
        secret = await call(as_user().core.read_namespaced_secret(name, namespace))
    except NotFound:
        raise _refused(secret_missing(name, namespace), SECRET_REF) from None
    except KubeError as exc:
        if exc.status != FORBIDDEN:
            raise
        if not await users_own(exc):
            raise not_authorizing(exc) from None
        raise APIError(
            403,
            PERMISSION_DENIED,
            f"you may not read Secret {name!r} in namespace {namespace!r}; a VM may name only a Secret you may read",
        ) from None
    return secret_user_data(secret.data, name, key, namespace)


async def checked_cloud_init(given: CloudInitRequest | None, namespace: str) -> CloudInitSpec | None:
    """The VM's spec.cloudInit from the request, once its user-data is known to be usable; APIError otherwise."""
    if given is None:
        return None
    keys = list(given.ssh_authorized_keys or [])
    ref = given.user_data_secret_ref
    field = SECRET_REF if ref is not None else USER_DATA
    try:
        text = await _secret_value(namespace, ref.name, ref.key) if ref is not None else given.user_data
        user_data(text, keys)
    except CloudInitError as exc:
        raise _refused(exc, SECRET_REF if exc.reason == SECRET_NOT_FOUND else field) from None
    return CloudInitSpec.model_validate(given.model_dump(exclude_none=True))
