"""The engine's own view of an AccessPolicy or PrivilegedAccessPolicy.

The resource models (``api/``) are richer and may change; the engine needs only what decides
a connection. An adapter turns a stored resource into a ``Policy``, and this module checks
what the engine itself relies on, as the original's ``AccessPolicySpec.Validate`` does:
an action, at least one ``from`` and one ``to`` selector, and a namespace exactly when the
policy is namespaced. Privileged policies are cluster-wide and carry ``namespace=""``.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterlink.errors import ValidationError

from .attributes import Attributes
from .decisions import Action
from .selectors import Selector

__all__ = ["Policy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    name: str
    namespace: str = ""
    privileged: bool = False
    action: Action
    from_: tuple[Selector, ...]
    to: tuple[Selector, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValidationError("a policy needs a name", field="metadata.name")
        if self.privileged and self.namespace:
            raise ValidationError(
                f"privileged policy {self.name!r} is cluster-wide; pass namespace=''",
                field="metadata.namespace",
            )
        if not self.privileged and not self.namespace:
            raise ValidationError(
                f"policy {self.name!r} needs a namespace", field="metadata.namespace"
            )
        try:
            action = Action(self.action)
        except ValueError:
            raise ValidationError(
                f"unknown action {self.action!r}; use allow or deny", field="spec.action"
            ) from None
        for side, selectors in (("from", self.from_), ("to", self.to)):
            if not selectors:
                raise ValidationError(
                    f"policy {self.ref} needs at least one selector; "
                    "use {workloadSelector: {}} to match everything",
                    field=f"spec.{side}",
                )
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "from_", tuple(self.from_))
        object.__setattr__(self, "to", tuple(self.to))

    @property
    def ref(self) -> str:
        """How decisions and logs name this policy: ``namespace/name``; ``name`` if privileged."""
        return self.name if self.privileged else f"{self.namespace}/{self.name}"

    @property
    def depends_on_client_attributes(self) -> bool:
        """Whether some ``from`` selector looks at attributes (so an unknown client matters)."""
        return any(not selector.is_empty for selector in self.from_)

    def matches(self, src: Attributes, dst: Attributes) -> bool:
        return _any_matches(self.from_, src) and _any_matches(self.to, dst)


def _any_matches(selectors: tuple[Selector, ...], attrs: Attributes) -> bool:
    # A plain loop, not any(<generator>): about 3x cheaper per call, and this runs for every
    # policy on every new connection.
    for selector in selectors:  # noqa: SIM110 -- hot path, see above
        if selector.matches(attrs):
            return True
    return False
