"""Sustained, checked load through two real gateways, and what it leaves behind in them.

One soak, two sizes: ``tests/soak/`` runs it long (200 tunnels, 2 minutes,
not in the default suite) and ``test_soak_smoke.py`` short (so the code cannot rot unseen).

The load: ``tunnels`` client workers, each opening a tunnel through the source gateway's
Import, running a random number of request/response exchanges on it back to back, closing it
with a half-close (and expecting a clean EOF), and opening the next, until the time is up.
An exchange is small (a few KiB), medium (up to 256 KiB) or large (up to 4 MiB), each way.
Every byte is checked both ways: each side sends the SHA-256 of what it sent, the other side
compares it with what arrived (the service reports its verdict in its answer), and every
payload is a different slice of random data, so bytes delivered to the wrong tunnel, lost,
repeated or reordered cannot pass. Any failure (mismatch, reset, early EOF, timeout) is
counted with its description; nothing is retried.

What it leaves behind: open file descriptors (``/proc/PID/fd``) and resident memory
(``VmRSS``) of both gateway processes, read when they are configured and never used
(*pristine*), after a short warm-up with the same load (*before*: the level the load is
judged against), every second under load (*peak*), and after the load until they are back
within the tolerance of *before* or the settle bound runs out (*after*). Why a warm-up: the
first load leaves what any CPython process keeps for reuse (interned objects, free lists,
pooled connections to the peer); a leak is what keeps growing after that. *Before* is read
once the gateways have handed free memory back to the system after the warm-up, so *after*
must come down just as far.

Client and service run on one asyncio loop in the test process; the gateways are the
product's own processes (``tests/integration/gateways.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clusterlink.memory import DEFAULT_INTERVAL_S
from tests.integration.documents import access_policy, export, import_, peer
from tests.integration.gateways import Fabric, Gateway, parse_address, stop_all

__all__ = ["Figures", "Tolerance", "Usage", "check", "soak", "soak_and_check"]

KIB = 1024
MIB = 1024 * KIB
_POOL = os.urandom(8 * MIB)  # payloads are slices of this at random offsets
_HEAD = struct.Struct("!QQ")  # bytes up, bytes down
_DIGEST = 32
_CHUNK = 256 * KIB
_OK, _BAD = b"\x01", b"\x00"

CONNECT_TIMEOUT_S = 10.0
EXCHANGE_TIMEOUT_S = 120.0  # a 4 MiB exchange while hundreds of others share two vCPUs
SAMPLE_INTERVAL_S = 1.0
# After the warm-up, before *before* is read: its tunnels close in ms, and the gateway hands
# free memory back at its next periodic look (``clusterlink.memory``).
WARMUP_SETTLE_S = DEFAULT_INTERVAL_S + 2.0


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How close to *before* counts as "back": descriptors exactly, memory within a margin
    (the allocator's free lists move a little from run to run; a leak keeps growing). The
    settle bound covers the gateway's periodic hand-back of free memory (``clusterlink.memory``).
    """

    fds: int = 0
    rss_ratio: float = 0.10  # plus this fraction of the RSS before
    rss_kib: int = 8 * 1024  # plus this many KiB
    settle_s: float = 60.0  # how long to wait for idle clean-up after the load stops

    def rss_limit_kib(self, before: int) -> int:
        return int(before * (1 + self.rss_ratio)) + self.rss_kib

    def allows(self, before: Usage, after: Usage) -> bool:
        if after.fds > before.fds + self.fds:
            return False
        return after.rss_kib <= self.rss_limit_kib(before.rss_kib)


@dataclass(frozen=True, slots=True)
class Usage:
    fds: int
    rss_kib: int

    def __str__(self) -> str:
        return f"{self.fds} fds, {self.rss_kib / 1024:.1f} MiB RSS"


def usage_of(pid: int) -> Usage:
    fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return Usage(fds, int(line.split()[1]))
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


@dataclass
class GatewayFigures:
    name: str
    pristine: Usage
    before: Usage
    peak: Usage
    after: Usage
    settled_in_s: float

    def __str__(self) -> str:
        return (
            f"gateway {self.name}: pristine {self.pristine}; before {self.before}; "
            f"peak {self.peak}; after {self.after} ({self.settled_in_s:.1f} s after the load)"
        )


@dataclass
class Figures:
    """What one soak did and found."""

    mode: str
    tunnels: int
    duration_s: float
    connections: int = 0
    exchanges: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    warmup_connections: int = 0
    errors: list[str] = field(default_factory=list)
    gateways: list[GatewayFigures] = field(default_factory=list)

    def lines(self) -> list[str]:
        seconds = max(self.duration_s, 1e-9)
        total = self.bytes_up + self.bytes_down
        return [
            f"soak ({self.mode} mode): {self.tunnels} concurrent tunnels for "
            f"{self.duration_s:g} s, after a warm-up of {self.warmup_connections} connections",
            f"connections {self.connections}, exchanges {self.exchanges}, "
            f"bytes up {self.bytes_up:,}, down {self.bytes_down:,} "
            f"({total / MIB / seconds:.1f} MiB/s checked), errors {len(self.errors)}",
            *(str(g) for g in self.gateways),
            *(f"error: {e}" for e in self.errors[:20]),
        ]


# -- the service ------------------------------------------------------------------------------


async def _read_hashed(reader: asyncio.StreamReader, n_bytes: int) -> bytes:
    digest = hashlib.sha256()
    left = n_bytes
    while left:
        chunk = await reader.read(min(left, _CHUNK))
        if not chunk:
            raise EOFError(f"end of stream with {left} of {n_bytes} bytes still due")
        digest.update(chunk)
        left -= len(chunk)
    return digest.digest()


async def _send(writer: asyncio.StreamWriter, payload: memoryview) -> None:
    for start in range(0, len(payload), _CHUNK):
        writer.write(payload[start : start + _CHUNK])
        await writer.drain()


def _payload(rng: random.Random, n_bytes: int) -> memoryview:
    start = rng.randrange(len(_POOL) - n_bytes + 1)
    return memoryview(_POOL)[start : start + n_bytes]


class _Service:
    """Answers exchanges until the client's EOF: checks what came, sends what was asked."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.rng = random.Random(1)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.read(_HEAD.size):
                if len(head) < _HEAD.size:
                    head += await reader.readexactly(_HEAD.size - len(head))
                n_up, n_down = _HEAD.unpack(head)
                arrived = await _read_hashed(reader, n_up)
                claimed = await reader.readexactly(_DIGEST)
                payload = _payload(self.rng, n_down)
                await _send(writer, payload)
                verdict = _OK if arrived == claimed else _BAD
                writer.write(hashlib.sha256(payload).digest() + verdict)
                await writer.drain()
        except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
            self.errors.append(f"service: {type(exc).__name__}: {exc}")
        finally:
            writer.close()


# -- the clients ------------------------------------------------------------------------------

_SIZES: list[tuple[float, tuple[int, int]]] = [  # (share of exchanges, size range each way)
    (0.70, (16, 4 * KIB)),
    (0.25, (16 * KIB, 256 * KIB)),
    (0.05, (1 * MIB, 4 * MIB)),
]


def _size(rng: random.Random) -> int:
    pick = rng.random()
    for share, (low, high) in _SIZES:
        if pick < share:
            return rng.randint(low, high)
        pick -= share
    return rng.randint(*_SIZES[-1][1])


class _Load:
    def __init__(self, address: tuple[str, int], figures: Figures, deadline: float) -> None:
        self.address = address
        self.figures = figures
        self.deadline = deadline

    async def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        loop = asyncio.get_running_loop()
        while loop.time() < self.deadline:
            try:
                await self._tunnel(rng, loop)
            except Exception as exc:
                self.figures.errors.append(f"client {seed}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.1)  # pacing: a failed client pauses before retrying

    async def _tunnel(self, rng: random.Random, loop: asyncio.AbstractEventLoop) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*self.address), CONNECT_TIMEOUT_S
        )
        self.figures.connections += 1
        try:
            for _ in range(rng.choice((1, 1, 2, 5, 20, 100))):
                if loop.time() >= self.deadline:
                    break
                await asyncio.wait_for(self._exchange(rng, reader, writer), EXCHANGE_TIMEOUT_S)
            writer.write_eof()
            rest = await asyncio.wait_for(reader.read(1), EXCHANGE_TIMEOUT_S)
            if rest:
                raise AssertionError(f"bytes after the last answer: {rest!r}")
        finally:
            writer.close()

    async def _exchange(
        self, rng: random.Random, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up = _payload(rng, _size(rng))
        n_down = _size(rng)
        writer.write(_HEAD.pack(len(up), n_down))
        await _send(writer, up)
        writer.write(hashlib.sha256(up).digest())
        await writer.drain()
        arrived = await _read_hashed(reader, n_down)
        trailer = await reader.readexactly(_DIGEST + 1)
        if trailer[:_DIGEST] != arrived:
            raise AssertionError(f"{n_down} bytes down arrived changed (checksum mismatch)")
        if trailer[_DIGEST:] != _OK:
            raise AssertionError(f"{len(up)} bytes up arrived changed (checksum mismatch)")
        self.figures.exchanges += 1
        self.figures.bytes_up += len(up)
        self.figures.bytes_down += n_down


async def _run(address: tuple[str, int], figures: Figures, sample: Callable[[], None]) -> None:
    """The workers until the time is up, sampling the gateways meanwhile."""
    loop = asyncio.get_running_loop()
    load = _Load(address, figures, loop.time() + figures.duration_s)
    workers = [asyncio.create_task(load.worker(seed)) for seed in range(figures.tunnels)]
    while not all(w.done() for w in workers):
        sample()
        await asyncio.wait(workers, timeout=SAMPLE_INTERVAL_S)
    await asyncio.gather(*workers)


class _Watch:
    """The gateways' fds and RSS: *pristine* (configured, never used), *before* (after the
    warm-up), *peak* (sampled under load)."""

    def __init__(self, gateways: list[Gateway]) -> None:
        self.pids = {g.name: g.process.pid for g in gateways}
        self.pristine = self.read()
        self.before = dict(self.pristine)
        self.peak = dict(self.pristine)

    def read(self) -> dict[str, Usage]:
        return {name: usage_of(pid) for name, pid in self.pids.items()}

    def mark_before(self) -> None:
        self.before = self.read()
        self.peak = dict(self.before)

    def sample(self) -> None:
        for name, now in self.read().items():
            top = self.peak[name]
            self.peak[name] = Usage(max(top.fds, now.fds), max(top.rss_kib, now.rss_kib))

    def settle(self, tolerance: Tolerance) -> dict[str, tuple[Usage, float]]:
        """Poll each gateway until it is back within the tolerance of *before*, or the bound
        runs out: its usage then, and the seconds that took."""
        started = time.monotonic()
        result: dict[str, tuple[Usage, float]] = {}
        while True:
            waited = time.monotonic() - started
            for name, now in self.read().items():
                if name not in result and (
                    tolerance.allows(self.before[name], now) or waited >= tolerance.settle_s
                ):
                    result[name] = (now, waited)
            if len(result) == len(self.pids):
                return result
            time.sleep(0.5)  # the poll's own interval


async def _drive(
    source: Gateway, target: Gateway, figures: Figures, *, warmup_s: float, watch: _Watch
) -> None:
    """Start the service and export it, warm up, then the load itself; stop the service."""
    service = _Service(figures.errors)
    server = await asyncio.start_server(service.serve, "127.0.0.1", 0, backlog=1024)
    try:
        port = server.sockets[0].getsockname()[1]
        await asyncio.to_thread(target.apply, export("soak", "default", port))
        document = await asyncio.to_thread(source.get, "import", "soak")
        address = parse_address(document["status"]["listen"])
        warmup = Figures(figures.mode, figures.tunnels, warmup_s, errors=figures.errors)
        await _run(address, warmup, lambda: None)
        figures.warmup_connections = warmup.connections
        await asyncio.sleep(WARMUP_SETTLE_S)  # a clock: the gateway's next periodic trim
        watch.mark_before()
        await _run(address, figures, watch.sample)
    finally:
        server.close()
        await server.wait_closed()


def soak(
    workdir: Path,
    *,
    tunnels: int,
    duration_s: float,
    warmup_s: float,
    mode: str = "mux",
    tolerance: Tolerance = Tolerance(),
) -> Figures:
    """Two gateways of a new fabric under ``workdir``, the load through them, and the
    figures; the gateways are stopped (SIGTERM, checked for exit 0) at the end."""
    fabric = Fabric(workdir, "soak")
    started: list[Gateway] = []
    try:
        for name, args in (("src", ("--tunnel-mode", mode)), ("dst", ())):
            log_path = workdir / f"gateway-{name}.log"
            started.append(Gateway(fabric.peer_dir(name), log_path=log_path, extra_args=args))
        source, target = started
        allow = access_policy("allow-all", "default", "allow")
        target.apply(peer("src", source.listen), allow)
        source.apply(peer("dst", target.listen), import_("soak", "default", peer="dst"), allow)

        figures = Figures(mode=mode, tunnels=tunnels, duration_s=duration_s)
        watch = _Watch(started)
        asyncio.run(_drive(source, target, figures, warmup_s=warmup_s, watch=watch))
        after = watch.settle(tolerance)
        figures.gateways = [
            GatewayFigures(
                name, watch.pristine[name], watch.before[name], watch.peak[name], *after[name]
            )
            for name in watch.pids
        ]
        return figures
    finally:
        stop_all(started)


def check(figures: Figures, tolerance: Tolerance) -> None:
    """What every soak must show (after printing its figures): traffic on every tunnel, no
    error, and each gateway back within the tolerance of its level before the load."""
    print("\n" + "\n".join(figures.lines()))
    assert not figures.errors, "\n".join(figures.errors[:20])
    assert figures.connections >= figures.tunnels
    assert figures.bytes_up and figures.bytes_down
    for gateway in figures.gateways:
        assert gateway.peak.fds >= gateway.before.fds + figures.tunnels // 2, gateway
        assert tolerance.allows(gateway.before, gateway.after), gateway


def soak_and_check(
    workdir: Path, *, tunnels: int, duration_s: float, warmup_s: float, mode: str
) -> Figures:
    """``soak``, then ``check``: the whole test."""
    tolerance = Tolerance()
    figures = soak(
        workdir,
        tunnels=tunnels,
        duration_s=duration_s,
        warmup_s=warmup_s,
        mode=mode,
        tolerance=tolerance,
    )
    check(figures, tolerance)
    return figures
