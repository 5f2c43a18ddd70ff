"""Why a connection would be allowed or denied: the decision order, tier by tier.

``PolicySet.decide`` answers with the one policy that decided; an operator debugging a
refusal also needs what did *not* decide: that no privileged policy matched, that a deny
policy matched and so the allow below it never counted, or that nothing matched at all.
``explain`` walks the same tiers in the same order as ``decide`` (``PolicySet.tiers``) and
records, per tier, which of its policies match. The first tier with a match decides, as in
``decide`` (the lowest name within it); tiers after it are reported as not reached, with
their matches still listed so a shadowed allow is visible. Pure, like the rest of the
package: the caller builds the attributes exactly as the data path would.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .attributes import Attributes
from .decisions import Action, Decision
from .policyset import PolicySet

__all__ = ["Explanation", "Tier", "TierTrace", "explain"]


class Tier(enum.StrEnum):
    """The steps of the decision order (DESIGN §4), as explanations name them."""

    PRIVILEGED_DENY = "privileged deny"
    PRIVILEGED_ALLOW = "privileged allow"
    DENY = "deny"
    ALLOW = "allow"
    DEFAULT_DENY = "default deny"


_POLICY_TIERS = (
    (Tier.PRIVILEGED_DENY, Action.DENY, True),
    (Tier.PRIVILEGED_ALLOW, Action.ALLOW, True),
    (Tier.DENY, Action.DENY, False),
    (Tier.ALLOW, Action.ALLOW, False),
)


@dataclass(frozen=True, slots=True)
class TierTrace:
    """One tier: how many of its policies apply here, which of them match, and whether it
    decided (``reached`` is False once an earlier tier decided)."""

    tier: Tier
    checked: int
    matched: tuple[str, ...]
    reached: bool
    is_deciding: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    tiers: tuple[TierTrace, ...]  # every tier, the default deny last
    decision: Decision


def explain(policies: PolicySet, src: Attributes, dst: Attributes, namespace: str) -> Explanation:
    """What ``policies.decide(src, dst, namespace)`` decides, and the path to it."""
    traces: list[TierTrace] = []
    decision: Decision | None = None
    for (tier, action, privileged), members in zip(
        _POLICY_TIERS, policies.tiers(namespace), strict=True
    ):
        matched = tuple(p.ref for p in members if p.matches(src, dst))
        deciding = decision is None and bool(matched)
        traces.append(TierTrace(tier, len(members), matched, decision is None, deciding))
        if deciding:
            decision = Decision(action, matched[0], privileged)
    traces.append(TierTrace(Tier.DEFAULT_DENY, 0, (), decision is None, decision is None))
    return Explanation(tuple(traces), decision or Decision.default_deny())
