"""Start Thumbor on every core: ``python -m thumbor_plugins.serve --port 8888 --conf thumbor.conf``.

Used by ``imgstack dev``, the test suite and the Docker image, so all three run the same thing.
Every option is Thumbor's own (``thumbor --help``) and is passed on. What this adds:

- The configuration is read and checked once, before any worker starts: a bad one is refused
  with one clear message (exit status 1) instead of every worker failing in turn.
- ``IMGSTACK_PROCESSES`` workers (0 or unset: one per CPU core). This process binds the port,
  accepts every connection and hands it to the worker with the fewest open connections
  (:class:`Balancer`); it supervises the workers: one that dies is restarted (new connections go
  to the others meanwhile), SIGTERM/SIGINT stop them all (SIGKILL after a grace period). A single
  worker listens on the port itself.
- glibc malloc settings for the workers, each unless set (:data:`MALLOC_DEFAULTS`).
- With more than one worker and no ``PROMETHEUS_MULTIPROC_DIR``: a fresh private directory for
  it, so ``/metrics`` reports the totals of all workers (removed at exit).
- A lock directory shared by the workers, for :mod:`thumbor_plugins.singleflight`.

Tornado's own ``--processes`` fork is not used: its parent cannot be stopped cleanly (SIGTERM
kills it and leaves the workers running unsupervised).
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import singleflight

#: seconds a worker gets to finish its requests after SIGTERM
GRACE = 10.0

_MIB = 1024 * 1024
#: glibc malloc's settings for the workers, each used unless the environment sets it:
#: - ``MALLOC_ARENA_MAX``: glibc gives every render thread malloc arenas of its own, and freed
#:   image buffers stay in them; with 2, far less does.
#: - ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``: a render's decode buffers (tens of
#:   MB for a progressive JPEG's coefficients) are reused from the heap instead of being mapped
#:   fresh and returned on every render, which cost the kernel ~3 of the ~5 ms of system time per
#:   JPEG miss in the libvips threads (docs/decisions.md). What a worker keeps is bounded by its
#:   own peak; after a huge original the engine gives the heap back (vips_engine.release_memory).
MALLOC_DEFAULTS = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": str(64 * _MIB),
    "MALLOC_TRIM_THRESHOLD_": str(128 * _MIB),
}


def process_count(processes: int) -> int:
    """``IMGSTACK_PROCESSES``; 0: one per core this process may use (:func:`usable_cores`)."""
    return processes or usable_cores()


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, lowered to its cgroup's CPU quota when
    one is set (a container with ``cpus: 2`` on a 64-core host runs 2 workers, not 64)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit here
    return cores


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:  # noqa: ARG001
    raise _Stop


class Supervisor:
    """``count`` Thumbor workers. One worker listens on ``listener`` itself; several are handed
    its connections by a :class:`Balancer`."""

    def __init__(self, listener: socket.socket, count: int, thumbor_args: list[str]) -> None:
        self.listener = listener
        self.count = count
        self.args = thumbor_args
        self.balancer = Balancer(listener) if count > 1 else None
        self.workers: dict[int, tuple[int, subprocess.Popen]] = {}
        self.restarts: list[float] = []
        self.selector = selectors.DefaultSelector()

    def spawn(self, slot: int) -> None:
        # through this module's entry point: one worker, on the event loop run_thumbor picks
        if self.balancer is None:
            given, flag = self.listener, "--fd"
        else:
            given, flag = self.balancer.attach(slot), HANDOFF_FLAG
            self.selector.register(self.balancer.links[slot], selectors.EVENT_READ, slot)
        fd = given.fileno()
        argv = [sys.executable, "-m", "thumbor_plugins.serve", f"{flag}={fd}", *self.args]
        try:
            worker = subprocess.Popen(argv, pass_fds=(fd,), preexec_fn=_die_with_parent)  # noqa: S603, PLW1509
        finally:
            if given is not self.listener:
                given.close()  # the worker's end: the worker has it now
        self.workers[worker.pid] = (slot, worker)

    def run(self) -> int:
        if self.balancer is not None:
            self.selector.register(self.listener, selectors.EVENT_READ, None)
        for slot in range(self.count):
            self.spawn(slot)
        previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            polled = 0.0
            while True:
                if self.balancer is None:
                    time.sleep(0.2)
                else:
                    polled = self._hand_off(self.balancer, polled)
                if time.monotonic() - polled >= 0.2:
                    polled = time.monotonic()
                    for pid, (slot, worker) in list(self.workers.items()):
                        if worker.poll() is not None:
                            self._restart(pid, slot, worker.returncode)
        except _Stop:
            return 0
        finally:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self.stop()

    def _hand_off(self, balancer: Balancer, polled: float) -> float:
        """Up to 0.2 s of handing connections off; returns when the workers were last looked at
        (0: look now, a worker closed its end)."""
        for key, _ in self.selector.select(timeout=0.2):
            if key.data is None:
                balancer.accept()
            elif not balancer.heard(key.data):
                self.selector.unregister(key.fileobj)
                polled = 0.0
        return polled

    def _restart(self, pid: int, slot: int, code: int) -> None:
        del self.workers[pid]
        _mark_dead(pid)
        if self.balancer is not None:
            self._forget(slot)
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > 10 * self.count:
            raise SystemExit(f"imgstack: Thumbor workers keep exiting (last: {code}); giving up")
        print(f"imgstack: Thumbor worker {pid} exited ({code}); starting another", file=sys.stderr, flush=True)
        self.spawn(slot)

    def _forget(self, slot: int) -> None:
        assert self.balancer is not None
        link = self.balancer.links.get(slot)
        if link is not None:
            try:
                self.selector.unregister(link)
            except KeyError:
                pass  # unregistered when the worker closed its end
        self.balancer.detach(slot)

    def stop(self) -> None:
        if self.balancer is not None:
            # no new connections: the port's backlog is refused once the listener closes
            self.selector.close()
        workers = [worker for _, worker in self.workers.values()]
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        for worker in workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if self.balancer is not None:
            self.balancer.close()


#: the worker's flag for the Unix socket its connections arrive on (thumbor_adapter.HandedOffServer)
HANDOFF_FLAG = "--handoff-fd"


def _die_with_parent() -> None:
    """In a new worker (Linux): SIGTERM when the supervisor dies, even by SIGKILL, so that no
    worker goes on serving the port unsupervised. This process has no threads: safe to run here."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _listen(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.create_server((ip, port), family=family, backlog=1024)
    # a worker given the port itself must not block its event loop on an accept another won
    sock.setblocking(False)
    return sock


class Balancer:
    """The supervisor's side of the hand-off: every connection accepted on the port goes to the
    ready worker with the fewest open connections (ties: the one that got a connection least
    recently), passed over a Unix socket pair per worker (``SCM_RIGHTS``). A worker says on its
    pair when it is ready (:data:`READY`) and when a connection it was given closes
    (:data:`CLOSED`). A worker still starting gets connections only when no worker is ready
    (they wait in its pair until it is); with no worker at all, they wait here (at most
    :data:`MAX_PENDING`) for the next one.

    Why not let the workers accept: a client keeps its connection, and so its worker, for every
    request it sends. With the kernel choosing (one shared socket, or ``SO_REUSEPORT``'s hash),
    4 keep-alive connections landed on 2 workers 3:1 half of the time and 4:0 one time in eight;
    the busier worker then queued renders behind its thread pool while the other idled: 4:0
    rounds rendered 9% fewer PNGs per second, and the queued requests made the slow tail
    (docs/decisions.md)."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        listener.setblocking(False)  # accept() takes what is waiting, then returns
        #: slot -> the supervisor's end of that worker's pair
        self.links: dict[int, socket.socket] = {}
        #: slot -> connections handed to the worker and not closed yet
        self.open: dict[int, int] = {}
        #: slots whose worker said it is ready
        self.ready: set[int] = set()
        #: connections no worker could take yet
        self.pending: collections.deque[socket.socket] = collections.deque()
        self._given: dict[int, int] = {}
        self._handed = 0

    def attach(self, slot: int) -> socket.socket:
        """A new pair for the worker in ``slot`` (replacing a dead one's); returns the worker's
        end, to pass to it (the caller closes its copy once the worker started)."""
        self.detach(slot)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.links[slot], self.open[slot], self._given[slot] = ours, 0, 0
        self.flush()
        return theirs

    def detach(self, slot: int) -> None:
        link = self.links.pop(slot, None)
        if link is not None:
            link.close()
        self.open.pop(slot, None)
        self._given.pop(slot, None)
        self.ready.discard(slot)

    def close(self) -> None:
        for slot in list(self.links):
            self.detach(slot)
        while self.pending:
            self.pending.popleft().close()

    def accept(self) -> None:
        """Hand off every connection waiting on the port."""
        while True:
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. out of file descriptors: the next select retries
                print(f"imgstack: cannot accept a connection: {error}", file=sys.stderr, flush=True)
                return
            if self.pending or not self.hand_off(connection):
                self._wait(connection)

    def _wait(self, connection: socket.socket) -> None:
        if len(self.pending) >= MAX_PENDING:
            connection.close()  # the client sees it reset and may retry
        else:
            self.pending.append(connection)

    def flush(self) -> None:
        """Hand off the connections that waited for a worker, oldest first."""
        while self.pending and self.hand_off(self.pending[0]):
            self.pending.popleft()

    def hand_off(self, connection: socket.socket) -> bool:
        """Send ``connection`` to the least busy worker that takes it (a ready one first) and
        close this process's copy; False (``connection`` left open) when none takes it."""
        order = sorted(self.links, key=lambda s: (s not in self.ready, self.open[s], self._given[s]))
        for slot in order:
            try:
                socket.send_fds(self.links[slot], [b"c"], [connection.fileno()])
            except OSError:  # its buffer is full or the worker is gone: the next one
                continue
            connection.close()  # the worker has its own copy
            self._handed += 1
            self.open[slot] += 1
            self._given[slot] = self._handed
            return True
        return False

    def heard(self, slot: int) -> bool:
        """Read what the worker in ``slot`` sent: :data:`READY` once, :data:`CLOSED` per
        connection it closed. False once the worker's end is closed."""
        link = self.links.get(slot)
        while link is not None:
            try:
                data = link.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:  # the worker is gone (or going): the supervisor's poll restarts it
                self.ready.discard(slot)
                return False
            if READY in data:
                self.ready.add(slot)
            self.open[slot] = max(0, self.open[slot] - data.count(CLOSED))
        self.flush()
        return link is not None


#: what a worker sends on its hand-off socket once it serves, and when a connection it was
#: given closes
READY, CLOSED = b"+", b"-"
#: connections held while no worker takes any (all being restarted); more are refused
MAX_PENDING = 1024


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-p", "--port", type=int, default=8888)
    parser.add_argument("-i", "--ip", default="0.0.0.0")  # noqa: S104 - Thumbor's default
    parser.add_argument("-f", "--fd", default=None)
    parser.add_argument(HANDOFF_FLAG, default=None, type=int)
    parser.add_argument("--processes", type=int, default=None)
    known, rest = parser.parse_known_args(args)
    from . import thumbor_adapter

    try:
        settings = thumbor_adapter.checked_settings(rest)
    except ValueError as error:  # SettingError, or Thumbor's for a missing --keyfile
        raise SystemExit(f"imgstack: refusing to start: {error}") from None
    count = max(1, known.processes if known.processes is not None else process_count(settings.processes))
    owned: list[str] = []
    if not os.environ.get(singleflight.LOCK_DIR_ENV):
        os.environ[singleflight.LOCK_DIR_ENV] = tempfile.mkdtemp(prefix="imgstack-locks-")
        owned.append(os.environ[singleflight.LOCK_DIR_ENV])
    try:
        if known.fd is not None:  # a socket of the caller's: one worker, this process
            thumbor_adapter.run_thumbor([*rest, f"--port={known.port}", f"--ip={known.ip}", f"--fd={known.fd}"])
            return 0
        if known.handoff_fd is not None:  # a worker of a Balancer: connections arrive on this
            link = socket.socket(fileno=known.handoff_fd)
            thumbor_adapter.run_thumbor([*rest, f"--port={known.port}", f"--ip={known.ip}"], handoff=link)
            return 0
        for name, value in MALLOC_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if count > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="imgstack-metrics-")
            owned.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        with _listen(known.ip, known.port) as listener:
            # the workers do not bind --port/--ip, but their own address (context.server, used
            # to call themselves when warming) must still be right: the port bound here
            port = listener.getsockname()[1]
            return Supervisor(listener, count, [*rest, f"--port={port}", f"--ip={known.ip}"]).run()
    finally:
        for path in owned:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
