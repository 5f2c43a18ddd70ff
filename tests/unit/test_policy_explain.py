"""``explain`` walks the tiers as ``decide`` does: same answer, and the path to it."""

from __future__ import annotations

from itertools import product

import pytest

from clusterlink.policy import (
    PEER_NAME,
    Action,
    Decision,
    Policy,
    PolicySet,
    Selector,
    Tier,
    explain,
)

SRC = {PEER_NAME: "site-a"}
DST = {PEER_NAME: "site-b", "export.clusterlink.net/name": "db"}
EVERYTHING = Selector()
NOTHING = Selector({PEER_NAME: "nobody"})


def _policy(name: str, action: Action, *, privileged: bool, matches: bool) -> Policy:
    return Policy(
        name=name,
        namespace="" if privileged else "default",
        privileged=privileged,
        action=action,
        from_=(EVERYTHING if matches else NOTHING,),
        to=(EVERYTHING,),
    )


TIERS = [
    (Tier.PRIVILEGED_DENY, True, Action.DENY, "block"),
    (Tier.PRIVILEGED_ALLOW, True, Action.ALLOW, "open"),
    (Tier.DENY, False, Action.DENY, "default/block"),
    (Tier.ALLOW, False, Action.ALLOW, "default/open"),
]


@pytest.mark.parametrize(
    "matching",
    list(product([False, True], repeat=4)),
    ids=lambda m: "".join("x" if t else "-" for t in m),
)
def test_every_combination_is_explained_as_decided(matching: tuple[bool, ...]) -> None:
    """Each tier holds one policy that matches or one that does not; the deciding tier is the
    first with a match, later ones are not reached, and the answer is ``decide``'s."""
    policies = PolicySet(
        _policy(ref.split("/")[-1], action, privileged=privileged, matches=match)
        for (_, privileged, action, ref), match in zip(TIERS, matching, strict=True)
    )
    result = explain(policies, SRC, DST, "default")
    assert result.decision == policies.decide(SRC, DST, "default")
    assert [t.tier for t in result.tiers] == [*(tier for tier, *_ in TIERS), Tier.DEFAULT_DENY]
    deciding = [t.tier for t in result.tiers if t.is_deciding]
    first = next((tier for (tier, *_), m in zip(TIERS, matching, strict=True) if m), None)
    assert deciding == [first or Tier.DEFAULT_DENY]
    tiers_and_matches = zip(TIERS, matching, strict=True)
    for trace, ((_, _, _, ref), match) in zip(result.tiers[:4], tiers_and_matches, strict=True):
        assert trace.checked == 1
        assert trace.matched == ((ref,) if match else ())
    reached = [t.reached for t in result.tiers]
    index = [t.tier for t in result.tiers].index(deciding[0])
    assert reached == [i <= index for i in range(5)]


def test_a_shadowed_allow_is_still_listed_as_matching() -> None:
    policies = PolicySet(
        [
            _policy("no-db", Action.DENY, privileged=False, matches=True),
            _policy("b-open", Action.ALLOW, privileged=False, matches=True),
            _policy("a-open", Action.ALLOW, privileged=False, matches=True),
        ]
    )
    result = explain(policies, SRC, DST, "default")
    assert result.decision == Decision(Action.DENY, "default/no-db")
    allow = result.tiers[3]
    assert (allow.matched, allow.reached, allow.is_deciding) == (
        ("default/a-open", "default/b-open"),
        False,
        False,
    )


def test_policies_of_another_namespace_are_not_checked() -> None:
    other = Policy(
        name="open", namespace="other", action=Action.ALLOW, from_=(EVERYTHING,), to=(EVERYTHING,)
    )
    result = explain(PolicySet([other]), SRC, DST, "default")
    assert [t.checked for t in result.tiers] == [0, 0, 0, 0, 0]
    assert result.decision == Decision.default_deny()
    assert result.tiers[-1].is_deciding
