"""What a policy decision says, and who said it.

Every decision names the policy that made it (DESIGN.md §4), so that a denied connection's
log line, its metrics and its status tell the operator which resource to look at.
``decided_by`` is ``namespace/name`` for an AccessPolicy, the bare ``name`` for a
PrivilegedAccessPolicy (they are cluster-wide), or ``"default deny"`` when nothing matched.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DEFAULT_DENY", "Action", "Decision"]

DEFAULT_DENY = "default deny"
"""``Decision.decided_by`` when no policy matched."""


class Action(enum.StrEnum):
    """A policy's ``spec.action``, spelled as in the resource."""

    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one connection; ``privileged`` says whether a privileged policy gave it."""

    action: Action
    decided_by: str
    privileged: bool = False

    @classmethod
    def default_deny(cls) -> Decision:
        return _DEFAULT_DENY_DECISION

    @property
    def is_allowed(self) -> bool:
        return self.action is Action.ALLOW

    @property
    def is_default(self) -> bool:
        """Whether no policy matched and the default deny decided."""
        return self.decided_by == DEFAULT_DENY and not self.privileged

    def __str__(self) -> str:
        if self.is_default:
            return f"{self.action} (default deny: no policy matched)"
        kind = "privileged policy" if self.privileged else "policy"
        return f"{self.action} by {kind} {self.decided_by}"


_DEFAULT_DENY_DECISION = Decision(Action.DENY, DEFAULT_DENY)
