"""Start Thumbor on every core: ``python -m thumbor_plugins.serve --port 8888 --conf thumbor.conf``.

Used by ``imgstack dev``, the test suite and the Docker image, so all three run the same thing.
Every option is Thumbor's own (``thumbor --help``) and is passed on. What this adds:

- The configuration is read and checked once, before any worker starts: a bad one is refused
  with one clear message (exit status 1) instead of every worker failing in turn.
- ``IMGSTACK_PROCESSES`` workers (0 or unset: one per CPU core). This process binds the port
  and supervises that many ``thumbor --fd`` workers, each on a socket of its own (see
  :func:`_listen`): a worker that dies is restarted on its socket (connections wait in its
  backlog meanwhile), SIGTERM/SIGINT stop them all (SIGKILL after a grace period).
- glibc malloc settings for the workers, each unless set (:data:`MALLOC_DEFAULTS`).
- With more than one worker and no ``PROMETHEUS_MULTIPROC_DIR``: a fresh private directory for
  it, so ``/metrics`` reports the totals of all workers (removed at exit).
- A lock directory shared by the workers, for :mod:`thumbor_plugins.singleflight`.

Tornado's own ``--processes`` fork is not used: its parent cannot be stopped cleanly (SIGTERM
kills it and leaves the workers running unsupervised).
"""

from __future__ import annotations

import argparse
import math
import os
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
    """``count`` Thumbor workers, worker *i* on listening socket ``sockets[i]`` (all sockets may
    be one and the same)."""

    def __init__(self, sockets: list[socket.socket], thumbor_args: list[str]) -> None:
        self.sockets = sockets
        self.args = thumbor_args
        self.workers: dict[int, tuple[int, subprocess.Popen]] = {}
        self.restarts: list[float] = []

    def spawn(self, slot: int) -> None:
        fd = self.sockets[slot].fileno()
        # through this module's --fd path: one worker, on the event loop run_thumbor picks
        argv = [sys.executable, "-m", "thumbor_plugins.serve", f"--fd={fd}", *self.args]
        worker = subprocess.Popen(argv, pass_fds=(fd,), preexec_fn=_die_with_parent)  # noqa: S603, PLW1509
        self.workers[worker.pid] = (slot, worker)

    def run(self) -> int:
        for slot in range(len(self.sockets)):
            self.spawn(slot)
        previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                for pid, (slot, worker) in list(self.workers.items()):
                    if worker.poll() is not None:
                        self._restart(pid, slot, worker.returncode)
                time.sleep(0.2)
        except _Stop:
            return 0
        finally:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self.stop()

    def _restart(self, pid: int, slot: int, code: int) -> None:
        del self.workers[pid]
        _mark_dead(pid)
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > 10 * len(self.sockets):
            raise SystemExit(f"imgstack: Thumbor workers keep exiting (last: {code}); giving up")
        print(f"imgstack: Thumbor worker {pid} exited ({code}); starting another", file=sys.stderr, flush=True)
        self.spawn(slot)

    def stop(self) -> None:
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


def _listen(ip: str, port: int, count: int) -> list[socket.socket]:
    """A listening socket per worker on the same port (Linux's SO_REUSEPORT: the kernel picks a
    worker's socket by a hash of each new connection's addresses, so connections spread over the
    workers without one worker accepting a whole burst, as it does from a shared socket; a handful
    of keep-alive connections can still land unevenly — all 4 on one of 2 workers 1 time in 8, seen
    here — and that worker then renders ENGINE_THREADPOOL_SIZE of them at a time while the other
    idles); elsewhere one socket they all share."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    balanced = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    sockets = []
    for _ in range(count if balanced else 1):
        sock = socket.create_server((ip, port), family=family, backlog=1024, reuse_port=balanced)
        # a worker that loses the race for a connection must not block its event loop
        sock.setblocking(False)
        sockets.append(sock)
        if port == 0:  # any free port: the others take the same one
            port = sock.getsockname()[1]
    return sockets if balanced else sockets * count


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-p", "--port", type=int, default=8888)
    parser.add_argument("-i", "--ip", default="0.0.0.0")  # noqa: S104 - Thumbor's default
    parser.add_argument("-f", "--fd", default=None)
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
        for name, value in MALLOC_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if count > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="imgstack-metrics-")
            owned.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        sockets = _listen(known.ip, known.port, count)
        try:
            # Thumbor listens on --fd and ignores --port/--ip, but the workers' own address
            # (context.server, used to call themselves when warming) must still be right
            return Supervisor(sockets, [*rest, f"--port={known.port}", f"--ip={known.ip}"]).run()
        finally:
            for sock in sockets:
                sock.close()
    finally:
        for path in owned:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
