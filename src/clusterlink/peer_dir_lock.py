"""One gateway per peer directory, for as long as it runs.

Two gateways on one peer directory would share its state and its ``gateway.json``: the second
overwrites the first one's addresses, and when either stops it takes the file with it, so the
CLI reports a live gateway as not running. ``hold_peer_dir`` refuses the second one.

Why ``flock`` on a file inside the directory: the kernel releases the lock when the process
dies however it dies (SIGKILL, OOM, power cut of a container), so a crashed gateway never
leaves a lock behind that blocks its restart. A pid file alone cannot tell a live gateway from
a dead one whose pid was reused. The lock file also holds the holder's pid, only so that the
refusal can name it; the lock is what decides, never the text.

Invariants: the lock is taken before anything of the directory is used or written and held
until the process exits or the ``with`` ends; the descriptor is close-on-exec, so a child
process never keeps it alive. An ``flock`` on a network file system may be local to one
machine; two machines sharing a peer directory are not guarded against.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from clusterlink.errors import ConflictError

__all__ = ["LOCK_FILE", "hold_peer_dir"]

LOCK_FILE = "gateway.lock"
# The holder writes its pid right after locking; a refusal that lands in between waits this
# long for it before saying the pid is unknown.
_PID_WAIT_S = 1.0


@contextlib.contextmanager
def hold_peer_dir(path: Path) -> Iterator[None]:
    """Hold the lock of the peer directory at ``path``; ConflictError if a live process holds it.

    A directory that does not exist is not locked: the gateway's check of its files comes next
    and says what is missing far better than a failed ``open`` of the lock file would. Nor is
    one the gateway may not write to (see below).
    """
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (FileNotFoundError, NotADirectoryError):
        yield
        return
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        # A directory we may not write (a Secret mounted into a pod, in Kubernetes mode):
        # nothing of it can be overwritten by a second gateway either, so there is nothing
        # to guard.
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise ConflictError(
                f"peer directory {path} is already served by a running gateway "
                f"(pid {_holder_pid(fd)}); stop that one first, or give this one "
                "another --peer-dir"
            ) from None
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fd, pid, 0)  # then cut: a reader never sees an empty file, only a mix
        os.ftruncate(fd, len(pid))
        yield
    finally:
        os.close(fd)  # releases the lock, if it was taken


def _holder_pid(fd: int) -> str:
    deadline = time.monotonic() + _PID_WAIT_S
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit() or time.monotonic() >= deadline:
            return text if text.isdigit() else "unknown"
        time.sleep(0.01)
