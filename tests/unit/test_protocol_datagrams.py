"""The datagram framing of a UDP tunnel: a 2-byte length per datagram, cut anywhere."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol.datagrams import MAX_DATAGRAM_BYTES, DatagramReader, frame_datagram


def test_a_datagram_is_its_length_in_two_bytes_then_its_bytes() -> None:
    assert frame_datagram(b"abc") == b"\x00\x03abc"
    assert frame_datagram(b"") == b"\x00\x00"


def test_whole_frames_in_one_chunk_come_out_as_datagrams_in_order() -> None:
    reader = DatagramReader()

    stream = frame_datagram(b"one") + frame_datagram(b"") + frame_datagram(b"three")

    assert reader.feed(stream) == [b"one", b"", b"three"]
    assert reader.pending_bytes == 0


def test_a_frame_cut_at_every_point_comes_out_whole_once_complete() -> None:
    stream = frame_datagram(b"hello") + frame_datagram(b"world")
    for cut in range(len(stream) + 1):
        reader = DatagramReader()

        first = reader.feed(stream[:cut])
        second = reader.feed(stream[cut:])

        assert first + second == [b"hello", b"world"], cut


def test_the_largest_datagram_passes_and_a_larger_one_is_never_framed() -> None:
    biggest = bytes(MAX_DATAGRAM_BYTES)
    assert DatagramReader().feed(frame_datagram(biggest)) == [biggest]

    with pytest.raises(ValueError, match="over the limit of 65507"):
        frame_datagram(bytes(MAX_DATAGRAM_BYTES + 1))


def test_a_length_over_the_limit_breaks_the_tunnel_on_the_length_alone() -> None:
    reader = DatagramReader()

    with pytest.raises(RemoteProtocolError, match="65508 bytes"):
        reader.feed((MAX_DATAGRAM_BYTES + 1).to_bytes(2, "big"))


def test_an_incomplete_frame_is_held_and_reported_until_its_rest_arrives() -> None:
    reader = DatagramReader()

    assert reader.feed(b"\x00\x05ab") == []
    assert reader.pending_bytes == 4
    assert reader.feed(memoryview(b"cde\x00")) == [b"abcde"]
    assert reader.pending_bytes == 1


@given(
    datagrams=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=10),
)
def test_any_datagrams_cut_into_any_chunks_come_back_unchanged(
    datagrams: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frame_datagram(d) for d in datagrams)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    reader = DatagramReader()

    out = [d for start, end in itertools.pairwise(bounds) for d in reader.feed(stream[start:end])]

    assert out == datagrams
    assert reader.pending_bytes == 0
