"""haproxy as a comparison proxy: HTTP/2 on both sides (cleartext), upstream
connections shared between clients (`http-reuse always`), one thread.

Its listening socket is handed over as `bind fd@N`.
"""

from __future__ import annotations

import os

from bench.child_proxy import ChildProxy

CONFIG = """\
global
    nbthread 1
    maxconn 1024
    tune.h2.max-concurrent-streams 1024
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend grpc
    bind fd@{fd} proto h2
    default_backend echo
backend echo
    http-reuse always
    server echo {backend} proto h2
"""


class Haproxy(ChildProxy):
    name = "haproxy"
    binary_name = "haproxy"

    def launch(self, binary: str, fd: int, backend: str) -> tuple[list[str], dict[str, str]]:
        conf = os.path.join(self.dir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(CONFIG.format(fd=fd, backend=backend))
        return [binary, "-db", "-f", conf], {}  # -db: in the foreground, our child
