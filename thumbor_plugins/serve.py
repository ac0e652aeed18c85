"""Start Thumbor on every core: ``python -m thumbor_plugins.serve --port 8888 --conf thumbor.conf``.

Used by ``imgstack dev``, the test suite and the Docker image, so all three run the same thing.
Every option is Thumbor's own (``thumbor --help``) and is passed on. What this adds:

- ``IMGSTACK_PROCESSES`` workers (0 or unset: one per CPU core). This process binds the port
  once and supervises that many ``thumbor --fd`` workers sharing the socket (the kernel hands
  each connection to a worker that is free to accept): a worker that dies is restarted,
  SIGTERM/SIGINT stop them all (SIGKILL after a grace period).
- ``MALLOC_ARENA_MAX=2`` for the workers unless set: memory freed after a large render goes back
  to the process instead of staying in per-thread arenas.
- With more than one worker and no ``PROMETHEUS_MULTIPROC_DIR``: a fresh private directory for
  it, so ``/metrics`` reports the totals of all workers (removed at exit).
- A lock directory shared by the workers, for :mod:`thumbor_plugins.singleflight`.

Tornado's own ``--processes`` fork is not used: its parent cannot be stopped cleanly (SIGTERM
kills it and leaves the workers running unsupervised).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from . import singleflight

#: seconds a worker gets to finish its requests after SIGTERM
GRACE = 10.0


def process_count(environ: dict[str, str] | None = None) -> int:
    """``IMGSTACK_PROCESSES``; 0 or unset: one per CPU core this process may use."""
    environ = os.environ if environ is None else environ
    text = (environ.get("IMGSTACK_PROCESSES") or "0").strip()
    try:
        count = int(text)
    except ValueError:
        raise SystemExit(f"IMGSTACK_PROCESSES={text!r}: expected a whole number (0: one per core)") from None
    if count < 0:
        raise SystemExit(f"IMGSTACK_PROCESSES={count}: must be 0 (one per core) or more")
    if count == 0:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return count


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:  # noqa: ARG001
    raise _Stop


class Supervisor:
    """``count`` Thumbor workers on one listening socket."""

    def __init__(self, count: int, sock: socket.socket, thumbor_args: list[str]) -> None:
        self.count = count
        self.sock = sock
        self.args = thumbor_args
        self.workers: dict[int, subprocess.Popen] = {}
        self.restarts: list[float] = []

    def spawn(self) -> None:
        fd = self.sock.fileno()
        argv = [sys.executable, "-m", "thumbor.server", f"--fd={fd}", *self.args]
        worker = subprocess.Popen(argv, pass_fds=(fd,))  # noqa: S603 - our own interpreter
        self.workers[worker.pid] = worker

    def run(self) -> int:
        for _ in range(self.count):
            self.spawn()
        previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                for pid, worker in list(self.workers.items()):
                    if worker.poll() is not None:
                        self._restart(pid, worker.returncode)
                time.sleep(0.2)
        except _Stop:
            return 0
        finally:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self.stop()

    def _restart(self, pid: int, code: int) -> None:
        del self.workers[pid]
        _mark_dead(pid)
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > 10 * self.count:
            raise SystemExit(f"imgstack: Thumbor workers keep exiting (last: {code}); giving up")
        print(f"imgstack: Thumbor worker {pid} exited ({code}); starting another", file=sys.stderr, flush=True)
        self.spawn()

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        for worker in self.workers.values():
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _listen(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.create_server((ip, port), family=family, backlog=1024)
    # every worker accepts on it: one that loses the race must not block its event loop
    sock.setblocking(False)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-p", "--port", type=int, default=8888)
    parser.add_argument("-i", "--ip", default="0.0.0.0")  # noqa: S104 - Thumbor's default
    parser.add_argument("-f", "--fd", default=None)
    parser.add_argument("--processes", type=int, default=None)
    known, rest = parser.parse_known_args(args)
    count = known.processes if known.processes is not None else process_count()
    owned: list[str] = []
    if not os.environ.get(singleflight.LOCK_DIR_ENV):
        os.environ[singleflight.LOCK_DIR_ENV] = tempfile.mkdtemp(prefix="imgstack-locks-")
        owned.append(os.environ[singleflight.LOCK_DIR_ENV])
    try:
        if known.fd is not None:  # a socket of the caller's: one worker, this process
            from thumbor.server import main as thumbor_main

            thumbor_main([*rest, f"--port={known.port}", f"--ip={known.ip}", f"--fd={known.fd}"])
            return 0
        # glibc gives every render thread malloc arenas of its own, and freed image buffers stay
        # in them; with 2, far less does (six 75 MP renders: 261 MB peak instead of 379 MB)
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        if count > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="imgstack-metrics-")
            owned.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        with _listen(known.ip, known.port) as sock:
            # Thumbor listens on --fd and ignores --port/--ip, but the workers' own address
            # (context.server, used to call themselves when warming) must still be right
            return Supervisor(count, sock, [*rest, f"--port={known.port}", f"--ip={known.ip}"]).run()
    finally:
        for path in owned:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
