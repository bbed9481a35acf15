"""A TCP relay on 127.0.0.1 that can hold each request back: slow storage, on demand.

Everything the app sends to Azurite passes through it; `delay_s` (0 by default) is added before
each chunk a client sends is forwarded, so a test can make storage calls slow and see whether
two requests' calls overlap in time (`windows`).
"""

from __future__ import annotations

import socket
import threading
import time


class LatencyProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay_s = 0.0
        self.windows: list[tuple[float, float]] = []  # (first byte in, answer started) per delayed chunk
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="latency-proxy").start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                if outbound and self.delay_s:
                    began = time.monotonic()
                    time.sleep(self.delay_s)
                    with self._lock:
                        self.windows.append((began, time.monotonic()))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
