"""A whole mesh on loopback for integration tests: a control plane, backends and
proxies as real processes, with the config built in the test from the backends'
real addresses.

    with Mesh(tmp_path) as mesh:
        a = mesh.start_backend("a")                       # interop TestService, x-backend: a
        mesh.start_control_plane(mesh_config({"echo": [a]}, [route("/", "echo")]))
        proxy = mesh.start_proxy("proxy-1")               # waits for /ready
        with proxy.channel() as ch: ...

`Mesh` owns every process it starts and stops each by its PID (SIGTERM, then
SIGKILL after a bound) in reverse order of starting. `ProxyHandle` reads the
proxy's admin pages; `Load` keeps client threads calling through a proxy and
counts outcomes, for tests that change things under traffic.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from meshgrpc.config.resources import AUTHZ, CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from tests.support.procs import MESHGRPC, Proc, credential_args, meshgrpc, poll_until, run_meshgrpc

BIG = 64 << 20
# Client options for calls through the proxy: large messages; no client-side retries,
# so a call the proxy drops shows up as a failure instead of being hidden; and a
# subchannel pool per channel, so each channel has its own connection (by default
# grpcio shares connections between channels to the same target in a process).
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG),
                   ("grpc.enable_retries", 0), ("grpc.use_local_subchannel_pool", 1))
BACKEND_MODULES = {"interop": "tests.support.interop_server", "greeter": "tests.support.greeter",
                   "demo": "meshgrpc.demo_backends",
                   "echo": "tests.integration.relay_harness"}
TYPE_NAMES = {CLUSTER: "Cluster", ENDPOINTS: "EndpointSet", ROUTES: "RouteConfig", AUTHZ: "AuthorizationPolicy"}
START_TIMEOUT = 20.0


# ---------------------------------------------------------------- config builders

def clusters(endpoints: dict[str, Iterable[str]], lb_policy: str = "ROUND_ROBIN") -> dict:
    """Clusters and their endpoint sets, as MeshConfig fields (a dict)."""
    return {
        "clusters": [{"name": n, "lb_policy": lb_policy} for n in endpoints],
        "endpoints": [{"cluster": n, "endpoints": [{"address": a} for a in addrs]}
                      for n, addrs in endpoints.items()],
    }


def route(prefix: str, cluster: str | None = None, *, weighted: dict[str, int] | None = None,
          timeout: str | None = None, name: str | None = None, regex: str | None = None,
          headers: list[dict] | None = None) -> dict:
    """One route: match on `prefix` (or `regex`), to `cluster` or `weighted` clusters."""
    action: dict[str, Any] = {"cluster": cluster} if cluster else \
        {"weighted_clusters": [{"name": n, "weight": w} for n, w in (weighted or {}).items()]}
    if timeout:
        action["timeout"] = timeout
    match: dict[str, Any] = {"regex": regex} if regex is not None else {"prefix": prefix}
    if headers:
        match["headers"] = headers
    return {"name": name or f"to-{cluster or '+'.join(weighted or {})}", "match": match, "route": action}


def route_config(routes: list[dict], name: str = "default", domains: Iterable[str] = ("*",)) -> dict:
    return {"name": name, "virtual_hosts": [{"name": "all", "domains": list(domains), "routes": routes}]}


def mesh_config(endpoints: dict[str, Iterable[str]], routes: list[dict] | None = None,
                route_name: str = "default", lb_policy: str = "ROUND_ROBIN") -> dict:
    """A MeshConfig dict: clusters from `endpoints`, plus one route config when `routes` is given."""
    config = clusters(endpoints, lb_policy)
    config["routes"] = [route_config(routes, route_name)] if routes is not None else []
    return config


# ---------------------------------------------------------------- admin pages

def http_get(address: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET http://ADDRESS/PATH: (status, body text); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class ProxyHandle:
    """A running `meshgrpc proxy` and its admin pages."""

    def __init__(self, proc: Proc, node_id: str) -> None:
        self.proc = proc
        self.node_id = node_id
        self.address = proc.address("proxy", START_TIMEOUT)
        self.admin = proc.address("admin", START_TIMEOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.admin, path)

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        assert status == 200, f"GET {path}: {status} {body}"
        return json.loads(body)

    def ready(self) -> bool:
        return self.get("/ready")[0] == 200

    def wait_ready(self, timeout: float = 15.0) -> None:
        poll_until(self.ready, timeout, f"proxy {self.node_id} /ready is 200\n{self.proc.output()}")

    def versions(self) -> dict[str, str]:
        """Config version in effect per type, by short type name (Cluster, EndpointSet, RouteConfig)."""
        return short_versions(self.json("/config_dump"))

    def wait_config(self, predicate: Callable[[dict], bool], timeout: float = 10.0, what: str = "") -> dict:
        """Polls /config_dump until `predicate(dump)` holds; returns that dump."""
        def check():
            dump = self.json("/config_dump")
            return dump if predicate(dump) else None
        return poll_until(check, timeout, f"proxy {self.node_id} config: {what}")

    def endpoints(self) -> dict[str, dict[str, dict]]:
        """/clusters as {cluster: {address: endpoint stats}}."""
        return {c["name"]: {e["address"]: e for e in c["endpoints"]} for c in self.json("/clusters")["clusters"]}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
        status, body = self.get("/metrics")
        assert status == 200, body
        total = 0.0
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def channel(self, **options) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=[*CHANNEL_OPTIONS, *options.items()])

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)


def short_versions(dump: dict) -> dict[str, str]:
    """The versions of a /config_dump by short type name (Cluster, EndpointSet, RouteConfig)."""
    return {TYPE_NAMES.get(t, t): v for t, v in dump["versions"].items()}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------- the mesh

class Mesh:
    """Starts and owns a mesh's processes; `stop()` (or leaving the `with`) stops them all."""

    def __init__(self, workdir) -> None:
        self.workdir = str(workdir)
        self.data_dir = os.path.join(self.workdir, "data")
        self.procs: list[Proc] = []
        self.backends: dict[str, str] = {}  # name -> address
        self.backend_procs: dict[str, Proc] = {}
        self.control_plane: Proc | None = None
        self.cp_address: str | None = None
        self.cp_mtls_address: str | None = None
        self.proxies: dict[str, ProxyHandle] = {}
        self._files = 0

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.print_output()  # pytest shows it with the failure
        self.stop()

    def print_output(self, lines: int = 40) -> None:
        """The last `lines` of output of each process this mesh started."""
        for proc in self.procs:
            tail = "\n".join(proc.output().splitlines()[-lines:])
            print(f"----- {' '.join(proc.args[1:6])} ... (pid {proc.pid}, exit {proc.popen.poll()})\n{tail}")

    def _own(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def start_backend(self, name: str, kind: str = "interop", *extra: str) -> str:
        """Starts a backend process (`kind`: interop, greeter, demo, echo); returns its address."""
        module = BACKEND_MODULES[kind]
        args = [] if kind == "echo" else ["--port", "0", "--name", name, *extra]
        proc = self._own(Proc([_python(), "-m", module, *args]))
        self.backend_procs[name] = proc
        self.backends[name] = proc.address("backend", START_TIMEOUT)
        return self.backends[name]

    def backend_stats(self, name: str) -> dict[str, int]:
        """Stops backend `name` and returns what it counted: calls received and
        calls its client cancelled (from its `backend stats` log line)."""
        proc = self.backend_procs[name]
        proc.stop()
        match = proc.wait_for_line(r"backend stats calls=(\d+) cancelled=(\d+)", timeout=5)
        return {"calls": int(match.group(1)), "cancelled": int(match.group(2))}

    def write_config(self, config: dict, name: str | None = None) -> str:
        """Writes a MeshConfig dict as a JSON file in the work dir; returns its path."""
        self._files += 1
        path = os.path.join(self.workdir, name or f"mesh-{self._files}.json")
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        return path

    def start_control_plane(self, config: dict | None = None, listen: str = "127.0.0.1:0",
                            attempts: int = 1, extra: tuple[str, ...] = ()) -> str:
        """Starts `meshgrpc control-plane` on the mesh's data dir (with `config` as
        --config when given, and `extra` flags); returns its address. `attempts` > 1
        retries a bind failure (restarting on a port the previous process just released)."""
        # A restart on the same address keeps the mTLS port too (clients' bootstraps name it).
        mtls = self.cp_mtls_address if listen == self.cp_address and self.cp_mtls_address else "127.0.0.1:0"
        args = ["control-plane", "--listen", listen, "--http", "127.0.0.1:0", "--data-dir", self.data_dir, *extra]
        if "--insecure" not in extra and "--listen-mtls" not in extra:
            args += ["--listen-mtls", mtls]
        if config is not None:
            args += ["--config", self.write_config(config)]
        for attempt in range(attempts):
            proc = self._own(meshgrpc(*args))
            try:
                self.cp_address = proc.address("control-plane", START_TIMEOUT)
                if "--listen-mtls" in args:
                    self.cp_mtls_address = proc.address("control-plane-mtls", START_TIMEOUT)
                self.control_plane = proc
                return self.cp_address
            except AssertionError:
                if proc.popen.poll() is None or attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))  # backoff between bind attempts, not synchronisation
        raise AssertionError("unreachable")

    def kill_control_plane(self) -> None:
        assert self.control_plane is not None
        self.control_plane.kill()
        self.control_plane = None

    def start_proxy(self, node_id: str = "proxy-1", *extra: str, ready: bool = True,
                    command: list[str] | None = None) -> ProxyHandle:
        """Starts `meshgrpc proxy` against the control plane; waits for /ready unless `ready` is False.
        `command` replaces `python -m meshgrpc.cli` (e.g. a wrapper that inspects the process)."""
        assert self.cp_address, "start the control plane first"
        args = ["proxy", "--node-id", node_id, "--control-plane", self.cp_address,
                "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", *extra]
        proc = self._own(Proc([*(command or MESHGRPC), *args, *credential_args(args)]))
        handle = ProxyHandle(proc, node_id)
        self.proxies[node_id] = handle
        if ready:
            handle.wait_ready()
        return handle

    def apply(self, config: dict, *flags: str) -> str:
        """`meshgrpc apply -f FILE` against the control plane; returns its output (asserts success)."""
        result = run_meshgrpc("apply", "-f", self.write_config(config), *flags,
                              "--control-plane", self.cp_address)
        assert result.returncode == 0, f"apply failed ({result.returncode}): {result.stderr}"
        return result.stdout

    def status(self) -> str:
        """`meshgrpc status` output (asserts success)."""
        result = run_meshgrpc("status", "--control-plane", self.cp_address)
        assert result.returncode == 0, f"status failed ({result.returncode}): {result.stderr}"
        return result.stdout

    def wait_synced(self, node_id: str, timeout: float = 10.0) -> str:
        """Polls `meshgrpc status` until `node_id` is SYNCED on every type; returns that output."""
        def check():
            text = self.status()
            return text if synced(text, node_id) else None
        return poll_until(check, timeout, f"meshgrpc status shows {node_id} SYNCED")

    def stop(self) -> dict[int, int]:
        """Stops every process this mesh started, newest first; returns exit codes by PID."""
        codes = {}
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                codes[proc.pid] = proc.stop(timeout=5)
            else:
                codes[proc.pid] = proc.popen.returncode
        self.procs.clear()
        return codes


def _python() -> str:
    return sys.executable


def status_rows(status_text: str) -> dict[str, str]:
    """`meshgrpc status` output as {node id: the rest of its row}."""
    rows = {}
    for line in status_text.splitlines()[2:]:
        node, _, rest = line.partition(" ")
        rows[node] = rest
    return rows


def synced(status_text: str, node_id: str, types: int = len(TYPE_ORDER)) -> bool:
    """True when `node_id` is SYNCED on every type in `meshgrpc status` output."""
    row = status_rows(status_text).get(node_id, "")
    return row.count("SYNCED") == types


# ---------------------------------------------------------------- load

class Load:
    """`threads` client threads, each on its own channel to `address`, calling `call(channel)`
    back to back until stopped. `call` returns a label (e.g. the x-backend that answered)
    or raises grpc.RpcError. Every outcome is logged with the call's start time, so a test
    can ask what calls *started* after a moment did (a call that started before a config
    change may legitimately finish after it on the old config).

        with Load(proxy.address, interop_unary) as load:
            load.wait_calls(100)
            ... change something ...
            changed = load.wait_label("b")          # the first call the change affected ended
            load.wait_calls(100, after=changed)
            assert set(load.labels(after=changed)) == {"b"}
        assert load.failures == []
    """

    def __init__(self, address: str, call: Callable[[grpc.Channel], str], threads: int = 4) -> None:
        self.address = address
        self._call = call
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.failures: list[str] = []
        self._log: list[tuple[float, float, str]] = []  # (started, ended, label) per successful call
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        with grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    label = self._call(channel)
                except grpc.RpcError as e:
                    with self._lock:
                        self.failures.append(f"{e.code().name}: {e.details()}")
                    continue
                with self._lock:
                    self._log.append((started, time.monotonic(), label))

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), "a load thread did not finish its call"

    @property
    def ok(self) -> int:
        with self._lock:
            return len(self._log)

    def latencies(self, after: float = 0.0, before: float = float("inf")) -> list[float]:
        """Seconds taken by the successful calls that started in [after, before), in start order."""
        with self._lock:
            return [ended - started for started, ended, _ in self._log if after <= started < before]

    def labels(self, after: float = 0.0) -> collections.Counter:
        """Labels of the successful calls that started at or after `after` (monotonic time)."""
        with self._lock:
            return collections.Counter(label for started, _, label in self._log if started >= after)

    def wait_calls(self, n: int, after: float = 0.0, timeout: float = 10.0) -> None:
        """Waits until `n` calls that started after `after` succeeded; fails at once on any failure."""
        def enough():
            with self._lock:
                assert not self.failures, f"calls failed: {self.failures[:5]}"
                return sum(1 for started, _, _ in self._log if started >= after) >= n
        poll_until(enough, timeout, f"{n} calls through {self.address}", interval=0.02)

    def wait_label(self, label: str, timeout: float = 10.0) -> float:
        """Waits for a call answered by `label`; returns when the first one ended. A config
        change that made it possible was applied before then, so every call started
        after that moment runs on the changed config."""
        def seen():
            with self._lock:
                assert not self.failures, f"calls failed: {self.failures[:5]}"
                return next((ended for _, ended, got in self._log if got == label), None)
        return poll_until(seen, timeout, f"a call answered by {label!r}", interval=0.02)


def backend_of(call) -> str:
    """The `x-backend` initial metadata value of a completed call."""
    return dict(call.initial_metadata()).get("x-backend", "")


def interop_unary(channel: grpc.Channel, timeout: float = 5.0) -> str:
    """One TestService.UnaryCall; returns the answering backend's name."""
    from meshtest.interop import messages_pb2, test_pb2_grpc
    _, call = test_pb2_grpc.TestServiceStub(channel).UnaryCall.with_call(
        messages_pb2.SimpleRequest(response_size=10), timeout=timeout)
    return backend_of(call)

