"""nghttpx (Debian's `nghttp2-proxy`) as a comparison proxy: cleartext HTTP/2 in
front, HTTP/2 to the echo backend (`proto=h2`), so it multiplexes calls on a few
upstream connections as meshgrpc does; one worker thread; no OCSP.

Its listening socket is handed over through `NGHTTPX_ACCEPT_1=tcp,FD`, the
inheritance nghttpx uses for its own binary upgrade: it adopts an inherited
socket whose address matches a configured frontend. (Debian's 1.52 links
libsystemd for sd_notify only; it does not read LISTEN_FDS, and given one it
would bind the port itself.)
"""

from __future__ import annotations

import os
import signal

from bench.child_proxy import ChildProxy

CONFIG = """\
frontend={host},{port};no-tls
backend={backend_host},{backend_port};;proto=h2
workers=1
no-ocsp=yes
frontend-http2-max-concurrent-streams=1024
errorlog-file={dir}/error.log
"""


class Nghttpx(ChildProxy):
    name = "nghttpx"
    binary_name = "nghttpx"
    version_flag = "--version"
    stop_signal = signal.SIGTERM  # at once: its worker ends when the main process does

    def launch(self, binary: str, fd: int, backend: str) -> tuple[list[str], dict[str, str]]:
        host, port = self.address.rsplit(":", 1)
        backend_host, backend_port = backend.rsplit(":", 1)
        conf = os.path.join(self.dir, "nghttpx.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(host=host, port=port, backend_host=backend_host, backend_port=backend_port,
                                  dir=self.dir))
        return [binary, f"--conf={conf}"], {"NGHTTPX_ACCEPT_1": f"tcp,{fd}"}
