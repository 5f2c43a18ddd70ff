"""The pure policy decision engine: attributes, selectors, decisions with reasons.

A gateway authorizes every connection twice — egress at the source gateway, ingress at the
target — by describing both ends as flat attributes (``attributes``) and asking a
``PolicySet`` to ``decide``. The order is fixed by DESIGN.md §4: privileged deny >
privileged allow > deny > allow > default deny, and every ``Decision`` names the policy
that made it.

This package does no I/O and knows nothing of the store or the resource models: callers
convert AccessPolicy / PrivilegedAccessPolicy resources into ``Policy`` values, build one
``PolicySet`` whenever the policies change, and swap it in.
"""

from .attributes import (
    ATTRIBUTE_DOMAIN,
    CLIENT_IP,
    CLIENT_LABELS_PREFIX,
    CLIENT_NAMESPACE,
    CLIENT_SERVICE_ACCOUNT,
    EXPORT_LABELS_PREFIX,
    EXPORT_NAME,
    EXPORT_NAMESPACE,
    PEER_LABELS_PREFIX,
    PEER_NAME,
    SIDES,
    Attributes,
    ClientIdentity,
    Side,
    destination_attributes,
    key_problem,
    source_attributes,
)
from .decisions import DEFAULT_DENY, Action, Decision
from .explain import Explanation, Tier, TierTrace, explain
from .policies import Policy
from .policyset import PolicySet
from .selectors import Operator, Requirement, Selector

__all__ = [
    "ATTRIBUTE_DOMAIN",
    "CLIENT_IP",
    "CLIENT_LABELS_PREFIX",
    "CLIENT_NAMESPACE",
    "CLIENT_SERVICE_ACCOUNT",
    "DEFAULT_DENY",
    "EXPORT_LABELS_PREFIX",
    "EXPORT_NAME",
    "EXPORT_NAMESPACE",
    "PEER_LABELS_PREFIX",
    "PEER_NAME",
    "SIDES",
    "Action",
    "Attributes",
    "ClientIdentity",
    "Decision",
    "Explanation",
    "Operator",
    "Policy",
    "PolicySet",
    "Requirement",
    "Selector",
    "Side",
    "Tier",
    "TierTrace",
    "destination_attributes",
    "explain",
    "key_problem",
    "source_attributes",
]
