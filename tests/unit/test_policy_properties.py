"""Properties of the decision engine over generated policies and attributes.

The attribute alphabet is tiny on purpose, so generated selectors often match and the
interesting cases (several tiers matching at once) come up.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from clusterlink.policy import (
    EXPORT_NAME,
    PEER_NAME,
    Action,
    Attributes,
    Decision,
    Operator,
    Policy,
    PolicySet,
    Requirement,
    Selector,
)

KEYS = st.sampled_from([PEER_NAME, EXPORT_NAME, "client.clusterlink.net/labels.app"])
VALUES = st.sampled_from(["a", "b"])
NAMESPACES = st.sampled_from(["ns-1", "ns-2"])
attributes = st.dictionaries(KEYS, VALUES)

requirements = st.one_of(
    st.builds(
        Requirement,
        key=KEYS,
        operator=st.sampled_from([Operator.IN, Operator.NOT_IN]),
        values=st.frozensets(VALUES, min_size=1),
    ),
    st.builds(
        Requirement,
        key=KEYS,
        operator=st.sampled_from([Operator.EXISTS, Operator.DOES_NOT_EXIST]),
    ),
)
selectors = st.builds(
    Selector,
    match_labels=st.dictionaries(KEYS, VALUES, max_size=2),
    match_expressions=st.lists(requirements, max_size=2).map(tuple),
)
selector_lists = st.lists(selectors, min_size=1, max_size=2).map(tuple)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    is_privileged = draw(st.booleans())
    return Policy(
        name=draw(st.sampled_from(["a", "b", "c"])),
        namespace="" if is_privileged else draw(NAMESPACES),
        privileged=is_privileged,
        action=draw(st.sampled_from(Action)),
        from_=draw(selector_lists),
        to=draw(selector_lists),
    )


policy_lists = st.lists(policies(), max_size=8, unique_by=lambda p: (p.privileged, p.ref))

_RANK = {
    (True, Action.DENY): 0,
    (True, Action.ALLOW): 1,
    (False, Action.DENY): 2,
    (False, Action.ALLOW): 3,
}


def _reference_decide(
    policy_list: list[Policy], src: Attributes, dst: Attributes, namespace: str
) -> Decision:
    """DESIGN.md §4 read literally: the best-ranked matching policy, lowest name on ties."""
    matching = [
        p for p in policy_list if (p.privileged or p.namespace == namespace) and p.matches(src, dst)
    ]
    if not matching:
        return Decision.default_deny()
    best = min(matching, key=lambda p: (_RANK[p.privileged, p.action], p.name))
    return Decision(best.action, best.ref, best.privileged)


@given(policy_lists, attributes, attributes, NAMESPACES)
def test_decide_agrees_with_the_reference(policy_list, src, dst, namespace) -> None:
    decision = PolicySet(policy_list).decide(src, dst, namespace)
    assert decision == _reference_decide(policy_list, src, dst, namespace)


@given(policy_lists, st.randoms(), attributes, attributes, NAMESPACES)
def test_input_order_does_not_matter(policy_list, random, src, dst, namespace) -> None:
    shuffled = list(policy_list)
    random.shuffle(shuffled)
    expected = PolicySet(policy_list).decide(src, dst, namespace)
    assert PolicySet(shuffled).decide(src, dst, namespace) == expected


@given(policy_lists, policies(), attributes, attributes, NAMESPACES)
def test_adding_a_policy_never_flips_a_decision_against_its_action(
    policy_list, added, src, dst, namespace
) -> None:
    # An added allow can only turn deny into allow, an added deny only allow into deny.
    added = replace(added, name="added")  # a name no generated policy has
    before = PolicySet(policy_list).decide(src, dst, namespace)
    after = PolicySet([*policy_list, added]).decide(src, dst, namespace)
    if before.action is added.action:
        assert after.action is added.action


@given(policy_lists, policies(), attributes, attributes, NAMESPACES)
def test_a_matching_privileged_deny_always_wins(policy_list, drawn, src, dst, namespace) -> None:
    # A privileged deny built from arbitrary selectors, plus one that selects exactly this
    # connection so that it certainly matches.
    block = Policy(
        name=drawn.name,
        privileged=True,
        action=Action.DENY,
        from_=(*drawn.from_, Selector(src)),
        to=(*drawn.to, Selector(dst)),
    )
    without_namesake = [p for p in policy_list if (p.privileged, p.ref) != (True, block.ref)]
    decision = PolicySet([*without_namesake, block]).decide(src, dst, namespace)
    assert decision.action is Action.DENY
    assert decision.privileged
