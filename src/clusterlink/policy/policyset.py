"""The policy decision point: an immutable, precompiled set of policies.

``decide`` runs on every new connection, twice (egress and ingress), so all the work that
does not depend on the connection happens once, when the set is built:

- policies are split into four tiers, in decision order: privileged deny, privileged allow,
  deny, allow; the two non-privileged tiers are further split by namespace, because a
  namespaced policy applies only to the Imports (egress) or Exports (ingress) of its own
  namespace, while privileged ones apply everywhere;
- within a tier, policies are sorted by name, so when several match, the lowest name decides
  and the answer never depends on input order (the original iterates a Go map and so picks
  an arbitrary one);
- each policy's ``Decision`` is built in advance, so a decision costs only the selector
  checks.

The first matching policy in that order decides; if none matches, the default is deny.
To change the policies, build a new set and swap the reference: a set never changes, so
readers need no lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from clusterlink.errors import ValidationError

from .attributes import Attributes
from .decisions import Action, Decision
from .policies import Policy

__all__ = ["PolicySet"]

_Tier = tuple[tuple[Policy, Decision], ...]


class PolicySet:
    __slots__ = (
        "_allow_by_namespace",
        "_deny_by_namespace",
        "_depends_on_client_attributes",
        "_privileged_allow",
        "_privileged_deny",
    )

    def __init__(self, policies: Iterable[Policy] = ()) -> None:
        by_ref: dict[tuple[bool, str], Policy] = {}
        for policy in policies:
            key = (policy.privileged, policy.ref)
            if key in by_ref:
                kind = "privileged policy" if policy.privileged else "policy"
                raise ValidationError(f"duplicate {kind} {policy.ref}; names must be unique")
            by_ref[key] = policy
        ordered = sorted(by_ref.values(), key=lambda p: p.name)

        def tier(privileged: bool, action: Action) -> list[Policy]:
            return [p for p in ordered if p.privileged is privileged and p.action is action]

        self._privileged_deny = _compile(tier(True, Action.DENY))
        self._privileged_allow = _compile(tier(True, Action.ALLOW))
        self._deny_by_namespace = _by_namespace(tier(False, Action.DENY))
        self._allow_by_namespace = _by_namespace(tier(False, Action.ALLOW))
        self._depends_on_client_attributes = any(
            p.depends_on_client_attributes for p in by_ref.values()
        )

    def decide(self, src: Attributes, dst: Attributes, namespace: str) -> Decision:
        """Decide a connection from ``src`` to ``dst``.

        ``namespace`` selects the namespaced policies that apply: the Import's namespace on
        egress, the Export's on ingress.
        """
        for tier in (
            self._privileged_deny,
            self._privileged_allow,
            self._deny_by_namespace.get(namespace, ()),
            self._allow_by_namespace.get(namespace, ()),
        ):
            for policy, decision in tier:
                if policy.matches(src, dst):
                    return decision
        return Decision.default_deny()

    def tiers(self, namespace: str) -> tuple[tuple[Policy, ...], ...]:
        """The policies that apply in ``namespace``, tier by tier in the order ``decide``
        walks them (privileged deny, privileged allow, deny, allow), so that an explanation
        follows the very same order."""
        return tuple(
            tuple(policy for policy, _ in tier)
            for tier in (
                self._privileged_deny,
                self._privileged_allow,
                self._deny_by_namespace.get(namespace, ()),
                self._allow_by_namespace.get(namespace, ()),
            )
        )

    def depends_on_client_attributes(self) -> bool:
        """Whether some policy's ``from`` selects on attributes, as in the original.

        When it does not, the decision cannot depend on what is known about the client, so
        a gateway that could not learn the client's attributes may still decide; when it
        does, such a gateway should refuse rather than decide on missing attributes.
        """
        return self._depends_on_client_attributes


def _compile(policies: Iterable[Policy]) -> _Tier:
    return tuple((p, Decision(p.action, p.ref, p.privileged)) for p in policies)


def _by_namespace(policies: Iterable[Policy]) -> Mapping[str, _Tier]:
    grouped: dict[str, list[Policy]] = {}
    for policy in policies:
        grouped.setdefault(policy.namespace, []).append(policy)
    return MappingProxyType({ns: _compile(group) for ns, group in grouped.items()})
