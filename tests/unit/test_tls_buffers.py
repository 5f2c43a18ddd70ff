"""The buffer layout of a TLS socket: what is joined before a send, and batch buffers that are
used again only once nobody holds a piece of them."""

from __future__ import annotations

from clusterlink.transport.tls_buffers import BatchBuffer, Buffer, joined

RECORD = 16
MOST = 64


def _flat(buffers: list[Buffer]) -> bytes:
    return b"".join(bytes(b) for b in buffers)


def test_small_buffers_are_joined_into_one_send() -> None:
    out = joined([b"ab", b"cd", b"e"], record=RECORD, most=MOST)
    assert [bytes(b) for b in out] == [b"abcde"]


def test_a_single_small_buffer_is_sent_as_it_is() -> None:
    data = b"hello"
    assert joined([data], record=RECORD, most=MOST)[0] is data


def test_a_big_buffer_alone_is_sent_as_it_is_without_a_copy() -> None:
    data = bytes(range(40))
    assert joined([data], record=RECORD, most=MOST) == [data]


def test_a_header_before_a_big_payload_fills_the_first_record() -> None:
    header, payload = b"HDR", bytes(range(40))
    out = joined([header, payload], record=RECORD, most=MOST)
    assert len(out) == 2
    assert len(out[0]) == RECORD  # the header and the payload's first bytes: one record
    assert _flat(out) == header + payload


def test_a_run_of_a_record_or_more_is_not_joined_with_the_big_buffer_behind_it() -> None:
    run, payload = [b"x" * 10, b"y" * 10], bytes(range(40))
    out = joined([*run, payload], record=RECORD, most=MOST)
    assert [bytes(b) for b in out] == [b"x" * 10 + b"y" * 10, payload]


def test_runs_are_cut_at_most_bytes() -> None:
    out = joined([b"z" * 10] * 10, record=RECORD, most=30)
    assert [len(b) for b in out] == [30, 30, 30, 10]
    assert _flat(out) == b"z" * 100


def test_a_big_bytearray_is_copied_so_its_owner_may_change_it() -> None:
    payload = bytearray(b"p" * 40)
    out = joined([b"H", payload], record=RECORD, most=MOST)
    payload[:] = b"q" * 40
    assert _flat(out) == b"H" + b"p" * 40


def test_order_is_kept_across_small_and_big_buffers() -> None:
    parts: list[Buffer] = [b"a", bytes(range(20)), b"bc", b"d", bytes(range(30)), b"e"]
    out = joined(parts, record=RECORD, most=MOST)
    assert _flat(out) == _flat(parts)


def test_a_batch_buffer_nobody_holds_is_used_again() -> None:
    batches = BatchBuffer(32)
    first = batches.get()
    assert len(first) == 32
    view = memoryview(first)[:8]
    view.release()
    assert batches.get() is first


def test_a_batch_buffer_with_a_live_slice_is_never_written_again() -> None:
    batches = BatchBuffer(32)
    first = batches.get()
    first[:5] = b"hello"
    kept = memoryview(first)[:5]  # e.g. held in a paused stream's inbox
    second = batches.get()
    assert second is not first
    assert len(second) == 32
    second[:5] = b"world"
    assert bytes(kept) == b"hello"
    kept.release()
    assert batches.get() is second  # the newest one is the one kept for reuse
