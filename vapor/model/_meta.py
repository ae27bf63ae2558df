"""Kubernetes building blocks the Vapor resources are made of.

``ObjectMeta``, ``Condition`` and the ``Quantity`` type follow the Kubernetes
API conventions, so that what the model writes reads back unchanged and what
``kubectl`` shows matches what the components see.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "vapor.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class Model(BaseModel):
    """Base of every part of a resource: camelCase on the wire, snake_case in Python.

    Unknown fields are ignored rather than rejected, so that a component reading
    objects written by a newer version of the CRDs keeps working; the API
    server's own schema validation is what rejects bad input.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_assignment=True,
    )

    def to_api(self) -> dict[str, Any]:
        """Dump as the Kubernetes API expects it: camelCase keys, unset fields left out.

        A field set to None explicitly is written as null: in a merge patch
        (``Resources.patch_status``) that removes it from the object.
        """
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")

    def to_apply(self) -> dict[str, Any]:
        """Dump for server-side apply: camelCase keys, unset and None fields left out.

        In an apply the fields sent are the ones the writer owns; leaving a
        field out gives it up, so there is no null to send.
        """
        return self.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")

    @classmethod
    def partial(cls, **fields: Any) -> Self:
        """Only ``fields`` (each validated), for a merge patch: required fields left out stay out of the dump."""
        obj = cast(Self, cls.model_construct())
        for name, value in fields.items():
            setattr(obj, name, value)  # validate_assignment checks each value as it is set
        return obj


_QUANTITY_RE = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_SUFFIX: dict[str, Decimal] = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}

QUANTITY_PATTERN = _QUANTITY_RE.pattern


def parse_quantity(value: str | int) -> Decimal:
    """Return the value of a Kubernetes quantity ("512Mi", "1G", 1024) as a number.

    Raises ``ValueError`` for anything the API server would not accept.
    """
    if isinstance(value, bool):
        raise ValueError("a quantity is a number or a string such as 512Mi")
    if isinstance(value, int):
        return Decimal(value)
    text = str(value).strip()
    if not _QUANTITY_RE.match(text):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 512Mi, 2Gi, 1000000)")
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"):
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * _SUFFIX[suffix]
    if text[-1] in "numkMGTPE" and not re.search(r"[eE][+-]?[0-9.]+$", text):
        return Decimal(text[:-1]) * _SUFFIX[text[-1]]
    return Decimal(text)


def quantity_bytes(value: str | int) -> int:
    """Return a quantity as a whole number of bytes, rounding up as Kubernetes does."""
    number = parse_quantity(value)
    whole = int(number)
    return whole if whole == number else whole + 1


def _check_quantity(value: str | int) -> str | int:
    parse_quantity(value)
    return value


# A quantity keeps the spelling the user gave ("64Mi" stays "64Mi") so that a
# resource reads back exactly as it was applied; use quantity_bytes() for maths.
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


class MetadataPatch(Model):
    """The metadata a merge patch changes (``Resources.patch``).

    A None value in ``labels`` or ``annotations`` removes that key; a
    ``resource_version`` makes the patch fail with Conflict when the object
    changed since it was read.
    """

    labels: dict[str, str | None] | None = None
    annotations: dict[str, str | None] | None = None
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None
    resource_version: str | None = None


class ObjectMeta(Model):
    """The parts of Kubernetes object metadata the components read and write."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    owner_references: list[dict[str, Any]] | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None


ConditionStatus = Literal["True", "False", "Unknown"]
MAX_REASON = 1024
MAX_MESSAGE = 32768


class Condition(Model):
    """One aspect of an object's state, as in the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(
        description="Kind of condition, in CamelCase (for example Ready or Scheduled).",
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: ConditionStatus = Field(description="Whether the condition holds: True, False or Unknown.")
    reason: str = Field(
        default="",
        description="One CamelCase word a program can match on, saying why the status is what it is.",
        max_length=MAX_REASON,
    )
    message: str = Field(
        default="",
        description="What a person should know about this condition, in a sentence.",
        max_length=MAX_MESSAGE,
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed from one value to another."
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation of the object that this condition was set for.",
    )

    @classmethod
    def after(
        cls,
        current: Condition | None,
        *,
        type: str,
        status: ConditionStatus,
        reason: str,
        message: str,
        observed_generation: int | None = None,
    ) -> Condition:
        """The condition as it should now be: lastTransitionTime moves only when the status changes.

        Every writer of a condition goes through here (a message longer than
        the schema allows is cut).
        """
        unchanged = current is not None and current.status == status and current.last_transition_time
        since = current.last_transition_time if unchanged and current else datetime.now(UTC).replace(microsecond=0)
        extra = {} if observed_generation is None else {"observed_generation": observed_generation}
        return cls(
            type=type,
            status=status,
            reason=reason[:MAX_REASON],
            message=message[:MAX_MESSAGE],
            last_transition_time=since,
            **extra,
        )

    def says_same_as(self, other: Condition | None) -> bool:
        """Whether ``other`` tells the same (status, reason, message): nothing to write."""
        return other is not None and (self.status, self.reason, self.message) == (
            other.status,
            other.reason,
            other.message,
        )


def conditions_field(what: str) -> Any:
    """A ``conditions`` list keyed by type, as server-side apply expects."""
    return Field(
        default=None,
        description=f"The latest observations of the {what}'s state, one per type.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
