"""The base of the four Vapor kinds: a typed Kubernetes object plus its CRD facts.

Each kind declares, next to its fields, what its CustomResourceDefinition needs
(plural, scope, short names, printer columns), so that :mod:`vapor.crdgen` can
write the CRD from the model and the two can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import Field

from ._meta import API_VERSION, GROUP, VERSION, Condition, ConditionStatus, Model, ObjectMeta

SpecT = TypeVar("SpecT", bound=Model)
StatusT = TypeVar("StatusT", bound=Model)


@dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get`` (additionalPrinterColumns)."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0  # 0: always shown; 1: only with -o wide

    def to_api(self) -> dict[str, Any]:
        """Return the column as the CRD spells it."""
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class CRDInfo:
    """What a kind's CustomResourceDefinition says besides its schema."""

    plural: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("vapor",)


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


class Resource(Model, Generic[SpecT, StatusT]):
    """A Vapor custom resource: apiVersion, kind, metadata, spec and status."""

    crd: ClassVar[CRDInfo]
    group: ClassVar[str] = GROUP
    version: ClassVar[str] = VERSION

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SpecT
    status: StatusT | None = None

    @classmethod
    def plural(cls) -> str:
        """The resource name in URLs (``virtualmachines``)."""
        return cls.crd.plural

    @classmethod
    def crd_name(cls) -> str:
        """The CustomResourceDefinition's name (``virtualmachines.vapor.io``)."""
        return f"{cls.crd.plural}.{GROUP}"

    @classmethod
    def namespaced(cls) -> bool:
        """Whether objects of this kind live in a namespace."""
        return cls.crd.scope == "Namespaced"

    @classmethod
    def from_api(cls, obj: dict[str, Any]) -> Self:
        """Read an object as the Kubernetes API returns it."""
        return cls.model_validate(obj)

    def to_api(self) -> dict[str, Any]:
        """Dump as the Kubernetes API expects it, always naming apiVersion and kind."""
        body = super().to_api()
        return {"apiVersion": self.api_version, "kind": self.kind, **body}

    def condition(self, ctype: str) -> Condition | None:
        """The status condition of a type, or None."""
        conditions = getattr(self.status, "conditions", None) or []
        return next((c for c in conditions if c.type == ctype), None)

    def condition_after(
        self, ctype: str, status: ConditionStatus, reason: str, message: str, *, observe: bool = True
    ) -> Condition:
        """The condition ``ctype`` as it should now be (:meth:`Condition.after` of the current one).

        ``observe`` records this object's metadata.generation in it.
        """
        return Condition.after(
            self.condition(ctype),
            type=ctype,
            status=status,
            reason=reason,
            message=message,
            observed_generation=self.metadata.generation if observe else None,
        )

    @property
    def name(self) -> str:
        """metadata.name (every stored object has one)."""
        return self.metadata.name or ""
