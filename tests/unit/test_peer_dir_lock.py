"""The lock of a peer directory: one holder at a time, named in the refusal, gone with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clusterlink.errors import ConflictError
from clusterlink.peer_dir_lock import LOCK_FILE, hold_peer_dir


def test_a_second_holder_is_refused_with_the_pid_of_the_first(tmp_path: Path) -> None:
    # flock locks belong to an open file, so two opens in one process conflict like two
    # processes would.
    with (
        hold_peer_dir(tmp_path),
        pytest.raises(ConflictError) as refused,
        hold_peer_dir(tmp_path),
    ):
        pass

    assert str(refused.value) == (
        f"peer directory {tmp_path} is already served by a running gateway "
        f"(pid {os.getpid()}); stop that one first, or give this one another --peer-dir"
    )


def test_the_lock_is_free_again_once_released(tmp_path: Path) -> None:
    with hold_peer_dir(tmp_path):
        pass

    with hold_peer_dir(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_a_longer_pid_left_by_an_earlier_holder_is_replaced_whole(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("123456789012\n")

    with hold_peer_dir(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_a_missing_directory_is_left_to_the_peer_directory_check(tmp_path: Path) -> None:
    with hold_peer_dir(tmp_path / "nosuch"):
        assert not (tmp_path / "nosuch").exists()
