"""`meshgrpc demo`: the whole mesh on one machine in one command.

Starts three helloworld.Greeter backends of one service (one slowed by 25 ms)
and a canary backend, a control plane holding a config that sends 90% of calls
to the service and 10% to the canary, and a proxy; drives client calls through
the proxy and shows, about once a second, a table per endpoint: share of calls,
p50/p99 as the client saw them, the balancer's rtt estimate and health from the
proxy's /clusters. Halfway it applies a canary change (90/10 -> 50/50) through
the management API, and the table shows traffic follow it. Beside the sidecar's
client, a proxyless client (meshgrpc/demo_proxyless.py, its own process) calls
`xds:///greeter.mesh` with grpcio's xDS client, served by the same control plane;
its share and p50 per endpoint are the table's last columns.

Every process it starts runs in its own session (a terminal's Ctrl-C reaches only
the demo, which then stops them in order) and is also told by the kernel to exit
if the demo dies (PR_SET_PDEATHSIG), so nothing is left running either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import grpc

from helloworld import helloworld_pb2, helloworld_pb2_grpc
from meshapi.v1 import management_pb2, management_pb2_grpc
from meshgrpc.config.loader import parse_document
from meshgrpc.demo_view import CallLog, CallRecord, cluster_line, endpoint_rows, phase_summary, table
from meshgrpc.control_channel import ClientCredentials

LISTENING = re.compile(r"(?P<role>[\w-]+) listening on (?P<addr>[\w.\[\]:]+:\d+)")
SLOW_MS = 25.0
BACKENDS = (("greeter-1", "greeter", 0.0), ("greeter-2", "greeter", 0.0), ("greeter-3", "greeter", SLOW_MS),
            ("canary-1", "greeter-canary", 0.0))
CALL_DEADLINE_S = 2.0
STARTUP_DEADLINE_S = 30.0
PROXYLESS_TARGET = "greeter.mesh"


# ---------------------------------------------------------------- processes

def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class Child:
    """A process the demo started; its output goes to a log file in the work dir."""

    def __init__(self, label: str, args: list[str], workdir: str, env: dict[str, str] | None = None) -> None:
        self.label = label
        self.log_path = os.path.join(workdir, f"{label}.log")
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    async def address(self, role: str, timeout: float = STARTUP_DEADLINE_S) -> str:
        """The HOST:PORT from the child's `<role> listening on` line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in LISTENING.finditer(self.output()):
                if m["role"] == role:
                    return m["addr"]
            if self.popen.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise DemoError(f"{self.label} did not report `{role} listening on` within {timeout:g}s "
                        f"(exit code {self.popen.poll()}):\n{self.output()[-2000:]}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; always reaped."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


class DemoError(Exception):
    pass


def _meshgrpc(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshgrpc.cli", *args]


# ---------------------------------------------------------------- config

def mesh_config(addresses: dict[str, str], canary_weight: int) -> dict:
    """The demo's mesh: backend name -> address; `canary_weight` of 100 goes to the canary."""
    endpoints: dict[str, list[dict]] = {}
    for name, cluster, _ in BACKENDS:
        endpoints.setdefault(cluster, []).append({"address": addresses[name]})
    return {
        "clusters": [{"name": "greeter", "lb_policy": "PEAK_EWMA", "peak_ewma": {"decay": "2s"}},
                     {"name": "greeter-canary", "lb_policy": "ROUND_ROBIN"}],
        "endpoints": [{"cluster": c, "endpoints": e} for c, e in endpoints.items()],
        "routes": [route_config(canary_weight)],
        "listeners": [{"name": PROXYLESS_TARGET, "route_config": "default"}],
    }


def route_config(canary_weight: int) -> dict:
    """Calls with `x-canary: true` go to the canary; the rest are split by weight.
    Every service may see it: the proxyless client is a workload of service "demo-client"."""
    canary = {"name": "canary", "route": {"cluster": "greeter-canary", "timeout": "2s"},
              "match": {"prefix": "/helloworld.Greeter/", "headers": [{"name": "x-canary", "exact": "true"}]}}
    split = {"name": "default", "match": {"prefix": "/helloworld.Greeter/"},
             "route": {"weighted_clusters": [{"name": "greeter", "weight": 100 - canary_weight},
                                             {"name": "greeter-canary", "weight": canary_weight}],
                       "timeout": "2s"}}
    return {"name": "default", "services": ["*"], "virtual_hosts": [{"name": "all", "domains": ["*"],
                                                                     "routes": [canary, split]}]}


def credentials(data_dir: str) -> ClientCredentials:
    """The admin token and CA bundle the demo's control plane wrote into its data dir."""
    with open(os.path.join(data_dir, "ca.pem"), "rb") as f:
        bundle = f.read()
    with open(os.path.join(data_dir, "admin.token")) as f:
        return ClientCredentials(ca_bundle=bundle, token=f.read().strip())


def credential_flags(data_dir: str) -> tuple[str, ...]:
    return ("--token-file", os.path.join(data_dir, "admin.token"), "--ca-file", os.path.join(data_dir, "ca.pem"))


async def apply_canary(control_plane: str, canary_weight: int, data_dir: str) -> str:
    """Applies the new weights through the management API; returns the route version."""
    request = management_pb2.ApplyRequest(config=parse_document({"routes": [route_config(canary_weight)]}))
    async with credentials(data_dir).aio_channel(control_plane) as channel:
        response = await management_pb2_grpc.ManagementStub(channel).Apply(request, timeout=10)
    return ", ".join(f"{t.rsplit('.', 1)[-1]} {v}" for t, v in sorted(response.versions.items()))


# ---------------------------------------------------------------- traffic

async def _one_call(stub, log: CallLog) -> None:
    start = time.monotonic()
    call = stub.SayHello(helloworld_pb2.HelloRequest(name="demo"), timeout=CALL_DEADLINE_S)
    try:
        await call
        backend = dict(await call.initial_metadata()).get("x-backend", "?")
        ok, error = True, ""
    except grpc.aio.AioRpcError as e:
        backend, ok, error = "", False, f"{e.code().name}: {e.details()}"
    end = time.monotonic()
    log.add(CallRecord(end, backend, end - start, ok, error))


async def drive(target: str, log: CallLog, rate: float, stop: asyncio.Event, max_in_flight: int = 200) -> None:
    """Open-loop client: starts `rate` calls per second (at most `max_in_flight` at once) until `stop`."""
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task] = set()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        next_at = time.monotonic()
        while not stop.is_set():
            await slots.acquire()
            task = asyncio.create_task(_one_call(stub, log))
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), slots.release()))
            next_at += 1.0 / rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks, return_exceptions=True)  # each has its own deadline


class LineTail:
    """The complete lines appended to a file since the last call (the proxyless
    client's calls, written by another process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def new_lines(self) -> list[str]:
        try:
            with open(self.path) as f:
                f.seek(self._offset)
                text = f.read()
                self._offset = f.tell()
        except FileNotFoundError:
            return []
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        return lines


# ---------------------------------------------------------------- the demo

@dataclass
class Mesh:
    control_plane: str
    proxy: str
    admin: str
    names: dict[str, str]        # address -> backend name
    cluster_of: dict[str, str]   # backend name -> cluster
    proxyless_calls: str         # the file the proxyless client writes its calls to
    data_dir: str = ""           # the control plane's: its admin token and CA bundle


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _ready(admin: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{admin}/ready", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_proxyless(start, mesh: Mesh, workdir: str, rate: float) -> Child:
    """The proxyless client: its bootstrap names the demo's control plane."""
    path = os.path.join(workdir, "proxyless-bootstrap.json")
    made = subprocess.run(_meshgrpc("bootstrap", "--node-id", "demo-proxyless", "--service", "demo-client",
                                    "--cert-dir", os.path.join(workdir, "proxyless-certs"), "-o", path,
                                    "--control-plane", mesh.control_plane, *credential_flags(mesh.data_dir)),
                          capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        raise DemoError(f"meshgrpc bootstrap failed: {made.stderr}")
    return start("proxyless-client", [sys.executable, "-m", "meshgrpc.demo_proxyless", "--rate", str(rate),
                                      "--target", f"xds:///{PROXYLESS_TARGET}", "--out", mesh.proxyless_calls],
                 {"GRPC_XDS_BOOTSTRAP": path})


async def start_mesh(children: list[Child], workdir: str, screen: Screen, rate: float, http: str) -> Mesh:
    def start(label: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(label, args, workdir, env)
        children.append(child)
        return child
    backends = {name: start(name, [sys.executable, "-m", "meshgrpc.demo_backends", "--name", name,
                                   "--delay-ms", str(delay)]) for name, _, delay in BACKENDS}
    addresses = {name: await child.address("backend") for name, child in backends.items()}
    config = os.path.join(workdir, "mesh.json")
    with open(config, "w") as f:
        json.dump(mesh_config(addresses, canary_weight=10), f, indent=2)
    cp = start("control-plane", _meshgrpc("control-plane", "--config", config, "--listen", "127.0.0.1:0",
                                          "--http", http, "--data-dir", os.path.join(workdir, "data")))
    cp_address = await cp.address("control-plane")
    screen.pin(f"dashboard: http://{await cp.address('dashboard')}/")
    data_dir = os.path.join(workdir, "data")
    proxy = start("proxy", _meshgrpc("proxy", "--node-id", "demo", "--control-plane", cp_address,
                                     "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--drain-timeout", "2",
                                     *credential_flags(data_dir)))
    mesh = Mesh(cp_address, await proxy.address("proxy"), await proxy.address("admin"),
                {a: n for n, a in addresses.items()}, {n: c for n, c, _ in BACKENDS},
                os.path.join(workdir, "proxyless-calls.log"), data_dir)
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while not await asyncio.to_thread(_ready, mesh.admin):
        if time.monotonic() > deadline:
            raise DemoError(f"the proxy was not ready within {STARTUP_DEADLINE_S:g}s:\n{proxy.output()[-2000:]}")
        await asyncio.sleep(0.1)
    start_proxyless(start, mesh, workdir, rate)
    screen.say("started: " + ", ".join(f"{c.label} pid {c.pid}" for c in children))
    screen.say(f"control plane {mesh.control_plane}, proxy {mesh.proxy} (admin http://{mesh.admin}); "
        f"greeter-3 is slowed by {SLOW_MS:g} ms; logs in {workdir}")
    return mesh


class Screen:
    """Redraws in place on a terminal; prints one frame after another otherwise."""

    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.tty = out.isatty()
        self.events: list[str] = []
        self.pinned: list[str] = []  # shown above every frame on a terminal

    def say(self, line: str) -> None:
        self.events.append(line)
        if not self.tty:
            print(line, file=self.out, flush=True)

    def pin(self, line: str) -> None:
        """Printed at once, and kept at the top of the screen on a terminal."""
        self.pinned.append(line)
        print(line, file=self.out, flush=True)

    def frame(self, text: str) -> None:
        if self.tty:
            text = ("\x1b[H\x1b[2J" + "".join(p + "\n" for p in self.pinned) + text + "\n\n"
                    + "\n".join(self.events[-6:]))
        print(text + ("" if self.tty else "\n"), file=self.out, flush=True)


async def _frame(mesh: Mesh, log: CallLog, proxyless: CallLog, elapsed: float, args, canary_note: str) -> str:
    data = await asyncio.to_thread(_get_json, f"http://{mesh.admin}/clusters") or {"clusters": []}
    clusters = data.get("clusters", [])
    recent, recent_proxyless = log.window(time.monotonic()), proxyless.window(time.monotonic())
    length = f"{args.duration:g}s" if args.duration else "until Ctrl-C"
    failed = f"{log.failures} (last: {log.last_error})" if log.failures else "0"
    head = (f"meshgrpc demo  t={elapsed:4.1f}s of {length}   client {args.rate:g} calls/s through {mesh.proxy}   "
            f"failed calls so far: {failed}\n{cluster_line(clusters)}   canary: {canary_note}\n"
            f"(share, calls/s, p50, p99: the client's last {log.window_s:g}s; rtt estimate, health: the proxy's "
            f"/clusters; proxyless, pl p50: the proxyless client on xds:///{PROXYLESS_TARGET}, "
            f"{len(recent_proxyless) / log.window_s:.0f} calls/s, {proxyless.failures} failed)")
    return head + "\n\n" + table(endpoint_rows(clusters, recent, mesh.names, log.window_s, recent_proxyless))


async def _run(args, children: list[Child], workdir: str, screen: Screen) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    mesh = await start_mesh(children, workdir, screen, args.rate / 2, args.http)
    log, proxyless, tail = CallLog(), CallLog(), LineTail(mesh.proxyless_calls)
    traffic_stop = asyncio.Event()
    traffic = asyncio.create_task(drive(mesh.proxy, log, args.rate, traffic_stop))
    canary_at = args.duration / 2 if args.duration else args.canary_after
    canary_note = f"90/10, 50/50 at t={canary_at:g}s"
    started = time.monotonic()
    try:
        while not stop.is_set() and not traffic.done():
            elapsed = time.monotonic() - started
            if log.phase == "before" and elapsed >= canary_at:
                versions = await apply_canary(mesh.control_plane, 50, mesh.data_dir)
                _read_proxyless(tail, proxyless)  # calls made before the change count before it
                log.phase = proxyless.phase = "after"
                canary_note = f"50/50 since t={elapsed:.1f}s"
                screen.say(f"t={elapsed:.1f}s applied the canary change through the management API: "
                           f"greeter/greeter-canary 90/10 -> 50/50 (versions: {versions})")
            _read_proxyless(tail, proxyless)
            screen.frame(await _frame(mesh, log, proxyless, elapsed, args, canary_note))
            if args.duration and elapsed >= args.duration:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        traffic_stop.set()
        await asyncio.wait_for(traffic, CALL_DEADLINE_S + 5)
    _read_proxyless(tail, proxyless)
    for line in phase_summary(log, mesh.cluster_of) + phase_summary(proxyless, mesh.cluster_of, "proxyless client: "):
        screen.say(line)
    return 0


def _read_proxyless(tail: LineTail, log: CallLog) -> None:
    for line in tail.new_lines():
        if (record := CallRecord.from_line(line)) is not None:
            log.add(record)


def run(args) -> int:
    """Entry point for `meshgrpc demo`; returns the exit code."""
    if args.rate <= 0 or args.duration < 0:
        print("meshgrpc demo: --rate must be > 0 and --duration >= 0", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="meshgrpc-demo-")
    children: list[Child] = []
    screen = Screen()
    code = 1
    try:
        code = asyncio.run(_run(args, children, workdir, screen))
    except DemoError as e:
        print(f"meshgrpc demo: {e}", file=sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
        code = 0
    finally:
        for child in reversed(children):  # the proxy first, the backends last
            child.stop()
        print(f"stopped {len(children)} process(es): " + ", ".join(f"{c.label} ({c.popen.returncode})" for c in children),
              flush=True)
        if code == 0 and not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    return code
