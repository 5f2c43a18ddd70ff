"""Selectors keep Kubernetes label-selector semantics, absent keys included."""

from __future__ import annotations

import pytest

from clusterlink.errors import ValidationError
from clusterlink.policy import Operator, Requirement, Selector

ATTRS = {"app": "web", "tier": "front", "empty": ""}

IN, NOT_IN, EXISTS, DOES_NOT_EXIST = (
    Operator.IN,
    Operator.NOT_IN,
    Operator.EXISTS,
    Operator.DOES_NOT_EXIST,
)


@pytest.mark.parametrize(
    ("key", "operator", "values", "expected"),
    [
        ("app", IN, {"web"}, True),
        ("app", IN, {"db", "web"}, True),
        ("app", IN, {"db"}, False),
        ("missing", IN, {"web"}, False),
        ("empty", IN, {""}, True),
        ("app", NOT_IN, {"db"}, True),
        ("app", NOT_IN, {"web"}, False),
        ("missing", NOT_IN, {"web"}, True),  # Kubernetes: an absent key is "not in"
        ("empty", NOT_IN, {""}, False),
        ("app", EXISTS, set(), True),
        ("empty", EXISTS, set(), True),
        ("missing", EXISTS, set(), False),
        ("app", DOES_NOT_EXIST, set(), False),
        ("missing", DOES_NOT_EXIST, set(), True),
    ],
)
def test_requirement_operators(key, operator, values, expected) -> None:
    requirement = Requirement(key, operator, frozenset(values))
    assert requirement.matches(ATTRS) is expected


@pytest.mark.parametrize(
    ("selector", "attrs", "expected"),
    [
        (Selector(), {}, True),
        (Selector(), ATTRS, True),
        (Selector({"app": "web"}), ATTRS, True),
        (Selector({"app": "web", "tier": "front"}), ATTRS, True),
        (Selector({"app": "web", "tier": "back"}), ATTRS, False),
        (Selector({"missing": ""}), ATTRS, False),
        (Selector({"empty": ""}), ATTRS, True),
        (Selector({"app": "web"}, (Requirement("tier", IN, frozenset({"front"})),)), ATTRS, True),
        (Selector({"app": "web"}, (Requirement("tier", IN, frozenset({"back"})),)), ATTRS, False),
        (Selector({"app": "db"}, (Requirement("tier", EXISTS),)), ATTRS, False),
        (
            Selector(match_expressions=(Requirement("app", EXISTS), Requirement("x", EXISTS))),
            ATTRS,
            False,
        ),
    ],
)
def test_selector_needs_every_label_and_every_expression(selector, attrs, expected) -> None:
    assert selector.matches(attrs) is expected


def test_plain_strings_are_normalised() -> None:
    requirement = Requirement("app", "In", ["web", "web"])  # type: ignore[arg-type]  # untyped callers pass strings and lists
    assert requirement.operator is Operator.IN
    assert requirement.values == frozenset({"web"})


def test_selector_cannot_change_after_it_was_built() -> None:
    labels = {"app": "web"}
    selector = Selector(labels)
    labels["app"] = "db"
    assert selector.matches({"app": "web"})
    with pytest.raises(TypeError):
        selector.match_labels["app"] = "db"  # type: ignore[index]  # proving it is read-only


def test_equal_selectors_are_equal_and_hash_alike() -> None:
    a = Selector({"app": "web"}, (Requirement("x", EXISTS),))
    b = Selector({"app": "web"}, (Requirement("x", EXISTS),))
    assert a == b
    assert hash(a) == hash(b)
    assert a != Selector({"app": "db"}, (Requirement("x", EXISTS),))


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Requirement("app", "Gt", frozenset({"1"})), "operator"),  # type: ignore[arg-type]  # an unknown operator on purpose
        (lambda: Requirement("app", IN, frozenset()), "values"),
        (lambda: Requirement("app", NOT_IN, frozenset()), "values"),
        (lambda: Requirement("app", EXISTS, frozenset({"x"})), "values"),
        (lambda: Requirement("app", DOES_NOT_EXIST, frozenset({"x"})), "values"),
        (lambda: Requirement("", EXISTS), "key"),
        (lambda: Selector({"": "x"}), "matchLabels"),
    ],
)
def test_invalid_selectors_are_rejected(build, field) -> None:
    with pytest.raises(ValidationError) as info:
        build()
    assert info.value.field == field
