"""SendBuf and the one send path (``gsocket.send_queued``) against a fake socket that takes a few
bytes per call and now and then says EAGAIN (the one place a fake beats a real socket), then
against a real socketpair through the hub."""

from __future__ import annotations

import os
import random
import socket

import pytest

from tpd2py.gsocket import Socket, send_queued
from tpd2py.hub import Hub
from tpd2py.sendbuf import IOV_MAX, SendBuf


class StingySocket:
    """A sendmsg that takes at most ``max_bytes`` per call and raises EAGAIN every few calls.

    It records every buffer object it was handed, so tests can tell copies from originals.
    """

    def __init__(self, seed: int, max_bytes: int = 7, eagain_every: int = 3) -> None:
        self.rng = random.Random(seed)
        self.max_bytes = max_bytes
        self.eagain_every = eagain_every
        self.received = bytearray()
        self.calls = 0
        self.eagains = 0
        self.batches: list[list] = []

    def sendmsg(self, buffers: list) -> int:
        self.calls += 1
        if self.calls % self.eagain_every == 0:
            self.eagains += 1
            raise BlockingIOError
        assert len(buffers) <= IOV_MAX, f"{len(buffers)} buffers in one sendmsg"
        self.batches.append(list(buffers))
        budget = self.rng.randint(1, self.max_bytes)
        sent = 0
        for buf in buffers:
            data = bytes(buf[: budget - sent])
            self.received += data
            sent += len(data)
            if sent == budget:
                break
        return sent


class AsSocket:
    """A socket's send/sendmsg over a test's ``sendmsg(buffers)`` function."""

    def __init__(self, sendmsg) -> None:
        self._sendmsg = sendmsg

    def sendmsg(self, buffers, ancdata=(), flags=0) -> int:
        return self._sendmsg(buffers)

    def send(self, data, flags=0) -> int:
        return self._sendmsg([data])


def flush(buf: SendBuf, sendmsg, wait) -> None:
    """What every sender does around ``send_queued``: it sends until done or EAGAIN; on
    EAGAIN (False), wait; again until empty."""
    sock = sendmsg if hasattr(sendmsg, "send") else AsSocket(sendmsg)
    while buf.size and not send_queued(sock, buf):
        wait()


def _chunks(seed: int, count: int) -> list:
    rng = random.Random(seed)
    kinds = (bytes, bytearray, lambda b: memoryview(bytes(b)))
    out = []
    for i in range(count):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        out.append(kinds[i % 3](data))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_all_bytes_arrive_in_order_through_partial_writes_and_eagain(seed):
    chunks = _chunks(seed, 50)
    expected = b"".join(bytes(c) for c in chunks)
    sock = StingySocket(seed)
    waits = []
    buf = SendBuf()
    buf.extend(chunks[:25])
    for c in chunks[25:]:
        buf.add(c)
    assert len(buf) == len(expected)
    flush(buf, sock.sendmsg, lambda: waits.append(1))
    assert bytes(sock.received) == expected
    assert len(buf) == 0 and buf.chunks == []
    assert len(waits) == sock.eagains, "every EAGAIN waits once, nothing else does"
    assert len(sock.batches) == sock.calls - sock.eagains, "every other call sent something"


def test_empty_chunks_are_dropped():
    buf = SendBuf()
    buf.add(b"")
    buf.extend([b"", bytearray(), memoryview(b"")])
    assert buf.chunks == [] and len(buf) == 0
    flush(buf, _never_called, _never_called)  # nothing to send: no call at all


def _never_called(*args):
    raise AssertionError("must not be called")


def test_untouched_chunks_are_passed_as_the_same_objects():
    originals = [b"a" * 10, bytearray(b"b" * 10), b"c" * 10, b"d" * 10]
    sock = StingySocket(seed=1, max_bytes=15, eagain_every=10**9)
    buf = SendBuf()
    buf.extend(originals)
    flush(buf, sock.sendmsg, _never_called)
    assert bytes(sock.received) == b"".join(originals)
    for batch in sock.batches:
        for item in batch:
            if type(item) is memoryview:
                # A partly sent chunk continues as a view of the original, never a copy.
                assert any(item.obj is o for o in originals)
            else:
                assert any(item is o for o in originals), f"{item!r} is a copy"


def test_partial_write_advances_by_memoryview_without_copying():
    big = bytes(range(256)) * 64
    buf = SendBuf()
    buf.add(big)
    sent_sizes = iter([100, 1000])

    def sendmsg(buffers):
        n = next(sent_sizes, None)
        if n is None:
            raise OSError("stop here")
        return n

    with pytest.raises(OSError, match="stop here"):
        flush(buf, sendmsg, _never_called)
    (rest,) = buf.chunks
    assert type(rest) is memoryview and rest.obj is big
    assert bytes(rest) == big[1100:]
    assert len(buf) == len(big) - 1100


def test_error_other_than_eagain_propagates_and_keeps_the_unsent_rest():
    chunks = [b"0123456789", b"abcdefghij", b"KLMNOPQRST"]
    buf = SendBuf()
    buf.extend(chunks)
    state = {"calls": 0}

    def sendmsg(buffers):
        state["calls"] += 1
        if state["calls"] == 1:
            return 13
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        flush(buf, sendmsg, _never_called)
    assert b"".join(bytes(c) for c in buf.chunks) == b"".join(chunks)[13:]
    assert len(buf) == 30 - 13


def test_at_most_iov_max_chunks_per_sendmsg():
    n = IOV_MAX * 2 + 17
    sock = StingySocket(seed=3, max_bytes=10**9, eagain_every=10**9)
    buf = SendBuf()
    buf.extend(b"%d," % i for i in range(n))
    flush(buf, sock.sendmsg, _never_called)  # a full batch is no reason to wait
    assert bytes(sock.received) == b"".join(b"%d," % i for i in range(n))
    assert max(len(b) for b in sock.batches) == IOV_MAX
    assert len(sock.batches) == 3


def test_whole_buffer_in_one_sendmsg_when_the_kernel_takes_it():
    sock = StingySocket(seed=4, max_bytes=10**9, eagain_every=10**9)
    buf = SendBuf()
    buf.extend([b"head", b"body" * 100, b"tail"])
    flush(buf, sock.sendmsg, _never_called)
    assert len(sock.batches) == 1


def test_clear_drops_everything():
    buf = SendBuf()
    buf.extend([b"a", b"bc"])
    buf.clear()
    assert len(buf) == 0 and buf.chunks == []


# -- a real socketpair through the hub -------------------------------------------------------------


def _run(hub: Hub, *fns, limit: float = 10.0) -> None:
    """Spawn ``fns``, run the hub until all of them returned (or ``limit`` passed: fail)."""
    left = [len(fns)]
    errors: list[BaseException] = []
    expired = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                left[0] -= 1
                if not left[0]:
                    hub.stop()
        return run

    for fn in fns:
        hub.spawn(wrap(fn))
    timer = hub.call_later(limit, lambda: (expired.append(1), hub.stop()))
    hub.run()
    timer.cancel()
    assert not expired, "hub run exceeded its time limit"
    if errors:
        raise errors[0]


def test_real_socketpair_filled_until_eagain_then_flush_resumes_through_the_hub(hub):
    a, b = socket.socketpair()
    writer = Socket(a, hub=hub)
    reader = Socket(b, hub=hub)
    # Fill the kernel buffers first, so the flush below must wait for write space.
    prefill = 0
    with pytest.raises(BlockingIOError):
        for _ in range(100_000):
            prefill += a.send(b"p" * 65536)
    payload = [os.urandom(1000) for _ in range(3000)]  # ~3 MB, more than IOV_MAX chunks
    expected = b"p" * prefill + b"".join(payload)
    waits = []
    received = bytearray()

    def write():
        buf = SendBuf()
        buf.extend(payload)

        def wait():
            waits.append(1)
            hub.wait_writable(writer.rec)

        flush(buf, a, wait)
        writer.sock.shutdown(socket.SHUT_WR)

    def read():
        while True:
            data = reader.recv(65536)
            if not data:
                return
            received.extend(data)

    _run(hub, write, read)
    assert waits, "the flush never had to wait: the socket was not full"
    assert received == expected
    writer.close()
    reader.close()


def test_gsocket_sendall_of_a_large_chunk_while_peer_reads_slowly(hub):
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer = Socket(a, hub=hub)
    reader = Socket(b, hub=hub)
    data = os.urandom(2_000_000)
    received = bytearray()

    def write():
        writer.sendall(data)
        writer.shutdown(socket.SHUT_WR)

    def read():
        while chunk := reader.recv(1000):
            received.extend(chunk)
            hub.sleep(0)  # let the writer run between small reads

    _run(hub, write, read)
    assert received == data
    writer.close()
    reader.close()
