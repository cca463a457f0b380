"""nginx as a comparison proxy: `grpc_pass` to the echo backend, one worker.

Its listening socket is handed over through the `NGINX` environment variable
(nginx's socket inheritance, used by its binary upgrade). nginx's gRPC proxy
uses one upstream connection per call in flight, so the keepalive pool is at
least the calls in flight.
"""

from __future__ import annotations

import os
import signal

from bench.child_proxy import ChildProxy

CONFIG = """\
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream echo {{
        server {backend};
        keepalive {keepalive};
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {listen} http2;
        http2_max_concurrent_streams 1024;
        http2_max_requests 10000000;
        keepalive_requests 10000000;
        location / {{ grpc_pass grpc://echo; }}
    }}
}}
"""
KEEPALIVE = 256  # upstream connections kept: more than the bench ever has in flight


class Nginx(ChildProxy):
    name = "nginx"
    binary_name = "nginx"
    stop_signal = signal.SIGQUIT  # graceful: the master stops its worker

    def launch(self, binary: str, fd: int, backend: str) -> tuple[list[str], dict[str, str]]:
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(prefix=self.dir, backend=backend, keepalive=KEEPALIVE, listen=self.address))
        return [binary, "-p", self.dir, "-c", conf, "-g", "daemon off;"], {"NGINX": f"{fd};"}
