"""nginx as the comparison proxy: `grpc_pass` to the echo backend, run as our own
child (its own prefix directory and config in a temp dir, loopback only) and
stopped by PID.

The listening socket is bound here at port 0 and handed to nginx through the
`NGINX` environment variable (nginx's socket inheritance, used by its binary
upgrade), so no port number is guessed or reused.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

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
        # nginx's grpc_pass uses one upstream connection per call in flight.
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


def available() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


class Nginx:
    """One nginx master (+1 worker) in `prefix`; `address` is where it listens."""

    def __init__(self, binary: str, prefix: str, backend: str, keepalive: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        os.makedirs(prefix, exist_ok=True)
        self.conf = os.path.join(prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(prefix=prefix, backend=backend, keepalive=keepalive, listen=self.address))
        fd = self.sock.fileno()
        os.set_inheritable(fd, True)
        self.prefix = prefix
        self.popen = subprocess.Popen(
            [binary, "-p", prefix, "-c", self.conf, "-g", "daemon off;"], pass_fds=(fd,),
            env={**os.environ, "NGINX": f"{fd};"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.sock.close()  # nginx holds its own copy now

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.popen.stderr.read().decode()}")
            try:
                socket.create_connection(self.address.split(":"), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not accept connections on {self.address} within {timeout}s")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
