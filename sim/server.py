"""The threaded HTTP/1.1 server: keep-alive, TCP_NODELAY on every accepted socket, daemon handler threads."""

from __future__ import annotations

import socket
import socketserver
import threading
from http.server import ThreadingHTTPServer

from genpool.sim.handler import SimHandler
from genpool.sim.state import Simulator

LISTEN_BACKLOG = 1024  # a benchmark opens a few hundred connections at once


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # hanging handlers must not hold up shutdown
    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.stopping = threading.Event()  # wakes sleeping handlers (latency, hang) at shutdown
        super().__init__(address, SimHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name with getfqdn(), which can stall on a box without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[socket.socket, object]:
        conn, addr = super().get_request()
        # Without this, a response written in two segments waits ~40 ms for the client's delayed ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr
