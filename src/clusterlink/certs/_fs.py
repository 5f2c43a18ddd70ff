"""Writing a set of credential files all at once, keys private whatever the umask.

A directory of credentials is useful only whole: a certificate without its key (or a key
without its certificate) is worse than nothing, because the next ``create`` refuses to
overwrite it. So every file is written, flushed and fsynced in a hidden temporary directory
beside the target, and only then does the set appear:

- new target: one ``rename`` of the whole directory, atomic; a crash leaves either nothing or
  everything (plus, at worst, a hidden ``.partial-*`` directory to delete);
- existing target (the caller checked it holds none of these files; it may hold ``state.db``
  or, for a fabric, peer directories): the entries are renamed in one by one, each whole,
  the certificate last.

Replacing files of an existing directory (``replace_files``: a rotated certificate, an edited
trust bundle) stages them the same way and then renames each over its old version: a reader
(a running gateway polling its files) sees every file either old or new, never half-written.
Several files cannot change in one step, so keys go first and ``cert.pem`` last; a reader that
looks in between sees a certificate and a key that do not match, refuses them and looks again.

Keys get mode 0600 and directories 0700 explicitly (``chmod`` after creation), because
``os.open``/``mkdir`` modes are filtered through the umask. Certificates are public and keep
the umask's say.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from clusterlink.errors import CertificateError

_PRIVATE_FILE = 0o600
_PRIVATE_DIR = 0o700
_PUBLIC_FILE = 0o644
_COMMITTED_LAST = "cert.pem"


def commit_dir(target: Path, *, public: Mapping[str, bytes], secret: Mapping[str, bytes]) -> None:
    """Create ``target`` (mode 0700) holding these files; names may contain one ``/``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _staged(target.parent, public, secret) as staging:
            _move(staging, target)
    except OSError as exc:
        raise CertificateError(f"cannot write {target}: {exc.strerror or exc}") from exc


def replace_files(
    target: Path, *, public: Mapping[str, bytes], secret: Mapping[str, bytes]
) -> None:
    """Put these files into the existing directory ``target``, each replacing its old version
    atomically; keys first, ``cert.pem`` last."""
    try:
        with _staged(target, public, secret) as staging:
            order = [*secret, *sorted(public, key=lambda name: name == _COMMITTED_LAST)]
            for name in order:
                (staging / name).replace(target / name)
            for directory in {(target / name).parent for name in order}:
                _fsync_dir(directory)
    except OSError as exc:
        raise CertificateError(f"cannot write {target}: {exc.strerror or exc}") from exc


@contextmanager
def _staged(
    parent: Path, public: Mapping[str, bytes], secret: Mapping[str, bytes]
) -> Iterator[Path]:
    """A hidden directory in ``parent`` holding the files, written and synced; removed after
    (empty by then, or holding what was not moved out)."""
    # Not named after the target: a 253-character peer name plus a suffix exceeds NAME_MAX.
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=parent))
    try:
        staging.chmod(_PRIVATE_DIR)
        for name, data in public.items():
            _write(staging / name, data, private=False)
        for name, data in secret.items():
            _write(staging / name, data, private=True)
        _fsync_tree(staging)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    if not path.parent.exists():
        path.parent.mkdir()
        path.parent.chmod(_PRIVATE_DIR)
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE if private else _PUBLIC_FILE
    )
    with os.fdopen(fd, "wb") as file:
        if private:
            os.fchmod(fd, _PRIVATE_FILE)
        file.write(data)
        file.flush()
        os.fsync(fd)


def _move(staging: Path, target: Path) -> None:
    if not target.is_dir():
        staging.rename(target)
        _fsync_dir(target.parent)
        return
    target.chmod(_PRIVATE_DIR)
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == _COMMITTED_LAST):
        entry.rename(target / entry.name)
    _fsync_dir(target)


def _fsync_tree(root: Path) -> None:
    for directory, _, _ in os.walk(root):
        _fsync_dir(Path(directory))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
