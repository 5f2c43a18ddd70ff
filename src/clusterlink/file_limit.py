"""The gateway process's open-file limit.

Every tunnel holds two sockets (and a multiplexed peer connection one for many), so the usual
soft limit of 1024 descriptors would refuse connections long before ``--max-connections``.
"""

from __future__ import annotations

import logging
import resource
from typing import Final

__all__ = ["raise_file_limit"]

log = logging.getLogger("clusterlink.gateway")

_MAX_FILES: Final = 1_048_576


def raise_file_limit() -> None:
    """Raise the soft limit to the hard one (the most an unprivileged process may), capped
    at a million; a refusal is a warning, not a failure."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard if hard != resource.RLIM_INFINITY else _MAX_FILES, _MAX_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
            return
    log.debug("open-file limit: %d", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
