"""A loopback TCP forwarder that counts the bytes a client sends through it: put it between
Thumbor and S3 to prove that a request caused no S3 traffic at all. ``delay`` holds every answer
from upstream that many seconds (a slow S3)."""

from __future__ import annotations

import socket
import threading
import time


class CountingProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.bytes_up = 0
        self.connections = 0
        self.delay = 0.0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if count:
                    with self._lock:
                        self.bytes_up += len(chunk)
                elif self.delay:
                    time.sleep(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def settled(self, quiet: float = 0.3, limit: float = 10.0) -> int:
        """Bytes sent so far, once nothing has been sent for ``quiet`` seconds (earlier requests
        may still be writing their results after answering)."""
        deadline = time.monotonic() + limit
        last = self.bytes_up
        while time.monotonic() < deadline:
            time.sleep(quiet)
            if self.bytes_up == last:
                return last
            last = self.bytes_up
        return last

    def close(self) -> None:
        self._closed = True
        self.listener.close()
