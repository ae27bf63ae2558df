"""How a command names a VM: NAME with -n NAMESPACE, NAMESPACE/NAME, or the VM's uid."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from .errors import USAGE_ERROR, CLIError

DEFAULT_NAMESPACE = "default"
UID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class VMRef:
    """A VM as the REST API names it: an id or name in the path, the namespace in the query."""

    ident: str
    namespace: str

    @property
    def path(self) -> str:
        """/vms/<id or name>."""
        return f"/vms/{quote(self.ident, safe='')}"

    def __str__(self) -> str:
        return self.ident if UID_RE.match(self.ident) else f"{self.namespace}/{self.ident}"


def vm_ref(text: str, namespace: str | None) -> VMRef:
    """The VM that ``text`` names; ``namespace`` is -n (default "default")."""
    if "/" in text:
        ns, _, name = text.partition("/")
        if not ns or not name or "/" in name:
            raise CLIError(f"{text!r} is not NAME, NAMESPACE/NAME or an id", USAGE_ERROR)
        if namespace is not None and namespace != ns:
            raise CLIError(f"{text!r} names namespace {ns!r} but -n says {namespace!r}", USAGE_ERROR)
        return VMRef(name, ns)
    if not text:
        raise CLIError("a VM needs a name", USAGE_ERROR)
    return VMRef(text, namespace or DEFAULT_NAMESPACE)
