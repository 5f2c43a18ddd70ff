"""Decision order, namespace scoping, determinism and the reasons decisions give."""

from __future__ import annotations

from itertools import permutations, product

import pytest

from clusterlink.errors import ValidationError
from clusterlink.policy import (
    PEER_NAME,
    Action,
    Decision,
    Operator,
    Policy,
    PolicySet,
    Requirement,
    Selector,
)

ALLOW, DENY = Action.ALLOW, Action.DENY
SRC = {PEER_NAME: "site-a", "client.clusterlink.net/labels.app": "web"}
DST = {PEER_NAME: "site-b", "export.clusterlink.net/name": "db"}
EVERYTHING = Selector()
NOTHING = Selector({PEER_NAME: "nobody"})


def _policy(
    name: str,
    action: Action,
    *,
    privileged: bool = False,
    namespace: str = "default",
    from_: tuple[Selector, ...] = (EVERYTHING,),
    to: tuple[Selector, ...] = (EVERYTHING,),
) -> Policy:
    return Policy(
        name=name,
        namespace="" if privileged else namespace,
        privileged=privileged,
        action=action,
        from_=from_,
        to=to,
    )


# The four tiers in decision order, each with the decision it gives when it matches.
TIERS = [
    (True, DENY, Decision(DENY, "block", privileged=True)),
    (True, ALLOW, Decision(ALLOW, "open", privileged=True)),
    (False, DENY, Decision(DENY, "default/block")),
    (False, ALLOW, Decision(ALLOW, "default/open")),
]


@pytest.mark.parametrize(
    "matching",
    list(product([False, True], repeat=4)),
    ids=lambda m: "".join("x" if t else "-" for t in m),
)
def test_decision_order(matching: tuple[bool, ...]) -> None:
    # Every tier holds one policy; only those flagged in `matching` match the connection.
    policies = [
        _policy(
            decision.decided_by.rpartition("/")[2],
            action,
            privileged=privileged,
            to=(EVERYTHING if matches else NOTHING,),
        )
        for (privileged, action, decision), matches in zip(TIERS, matching, strict=True)
    ]
    expected = next(
        (decision for (_, _, decision), matches in zip(TIERS, matching, strict=True) if matches),
        Decision.default_deny(),
    )
    assert PolicySet(policies).decide(SRC, DST, "default") == expected


@pytest.mark.parametrize(
    ("from_", "to", "matches"),
    [
        ((EVERYTHING,), (EVERYTHING,), True),
        ((NOTHING,), (EVERYTHING,), False),
        ((EVERYTHING,), (NOTHING,), False),
        ((NOTHING, EVERYTHING), (NOTHING, EVERYTHING), True),
        ((Selector({PEER_NAME: "site-a"}),), (Selector({PEER_NAME: "site-b"}),), True),
        # `from` is matched against the source and `to` against the destination, not crosswise.
        ((Selector({PEER_NAME: "site-b"}),), (Selector({PEER_NAME: "site-a"}),), False),
    ],
)
def test_policy_needs_any_from_and_any_to(from_, to, matches) -> None:
    decision = PolicySet([_policy("p", ALLOW, from_=from_, to=to)]).decide(SRC, DST, "default")
    assert decision.is_allowed is matches


def test_empty_set_denies_by_default() -> None:
    decision = PolicySet().decide(SRC, DST, "default")
    assert decision == Decision(DENY, "default deny", privileged=False)
    assert decision.is_default


@pytest.mark.parametrize(
    ("policy", "namespace", "expected"),
    [
        (_policy("p", ALLOW, namespace="team-a"), "team-a", "allow"),
        (_policy("p", ALLOW, namespace="team-a"), "team-b", "deny"),
        (_policy("p", ALLOW, privileged=True), "team-a", "allow"),
        (_policy("p", ALLOW, privileged=True), "team-b", "allow"),
    ],
)
def test_namespaced_policies_apply_only_to_their_namespace(policy, namespace, expected) -> None:
    assert PolicySet([policy]).decide(SRC, DST, namespace).action == expected


def test_a_deny_in_another_namespace_does_not_block() -> None:
    policies = PolicySet(
        [_policy("open", ALLOW, namespace="team-a"), _policy("block", DENY, namespace="team-b")]
    )
    assert policies.decide(SRC, DST, "team-a") == Decision(ALLOW, "team-a/open")
    assert policies.decide(SRC, DST, "team-b") == Decision(DENY, "team-b/block")


@pytest.mark.parametrize("privileged", [False, True])
def test_lowest_name_decides_whatever_the_input_order(privileged: bool) -> None:
    names = ["zeta", "alpha", "mid"]
    expected = "alpha" if privileged else "default/alpha"
    for order in permutations(names):
        policies = PolicySet([_policy(name, DENY, privileged=privileged) for name in order])
        assert policies.decide(SRC, DST, "default").decided_by == expected


def test_privileged_and_namespaced_policies_may_share_a_name() -> None:
    policies = PolicySet([_policy("p", DENY, privileged=True), _policy("p", ALLOW)])
    assert policies.decide(SRC, DST, "default") == Decision(DENY, "p", privileged=True)


@pytest.mark.parametrize(
    "policies",
    [
        [_policy("p", ALLOW), _policy("p", DENY)],
        [_policy("p", ALLOW, privileged=True), _policy("p", DENY, privileged=True)],
    ],
)
def test_duplicate_policies_are_rejected(policies: list[Policy]) -> None:
    with pytest.raises(ValidationError, match="duplicate"):
        PolicySet(policies)


@pytest.mark.parametrize(
    ("decision", "text"),
    [
        (Decision(DENY, "block-b", privileged=True), "deny by privileged policy block-b"),
        (Decision(ALLOW, "default/allow-all"), "allow by policy default/allow-all"),
        (Decision.default_deny(), "deny (default deny: no policy matched)"),
    ],
)
def test_decisions_read_well_in_logs(decision: Decision, text: str) -> None:
    assert str(decision) == text


ON_CLIENT = Selector({"client.clusterlink.net/labels.app": "web"})
ON_EXPRESSION = Selector(match_expressions=(Requirement(PEER_NAME, Operator.EXISTS),))


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        ([], False),
        ([_policy("p", ALLOW)], False),
        ([_policy("p", ALLOW, to=(ON_CLIENT,))], False),
        ([_policy("p", ALLOW, from_=(EVERYTHING, ON_CLIENT))], True),
        ([_policy("p", DENY, from_=(ON_EXPRESSION,), namespace="other")], True),
        ([_policy("p", DENY, from_=(ON_CLIENT,), privileged=True)], True),
    ],
)
def test_depends_on_client_attributes(policies: list[Policy], expected: bool) -> None:
    assert PolicySet(policies).depends_on_client_attributes() is expected


def test_plain_action_string_is_normalised() -> None:
    policy = _policy("p", "deny")  # type: ignore[arg-type]  # untyped callers pass strings
    assert policy.action is DENY
    assert PolicySet([policy]).decide(SRC, DST, "default") == Decision(DENY, "default/p")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "metadata.name"),
        ({"namespace": ""}, "metadata.namespace"),
        ({"privileged": True}, "metadata.namespace"),
        ({"action": "permit"}, "spec.action"),
        ({"from_": ()}, "spec.from"),
        ({"to": ()}, "spec.to"),
    ],
)
def test_invalid_policies_are_rejected(fields: dict[str, object], field: str) -> None:
    valid: dict[str, object] = {
        "name": "p",
        "namespace": "default",
        "privileged": False,
        "action": ALLOW,
        "from_": (EVERYTHING,),
        "to": (EVERYTHING,),
    }
    with pytest.raises(ValidationError) as info:
        Policy(**(valid | fields))  # type: ignore[arg-type]  # deliberately invalid values
    assert info.value.field == field
