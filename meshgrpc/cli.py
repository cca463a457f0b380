"""The `meshgrpc` command: argument parsing and wiring only.

Each subcommand hands its parsed arguments to the module that owns the work and
exits with the code that module returns.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

DEFAULT_CONTROL_PLANE = "127.0.0.1:15010"
DEFAULT_HTTP = "127.0.0.1:15014"   # Istio's monitoring port


def _add_control_plane_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control-plane", default=DEFAULT_CONTROL_PLANE, metavar="HOST:PORT[,HOST:PORT...]",
        help=f"control plane address, or the replicas' addresses tried in turn (default {DEFAULT_CONTROL_PLANE})",
    )
    _add_credential_flags(parser)


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _bytes(text: str) -> int:
    """A size: a number of bytes, or with a KiB/MiB/GiB suffix ("16MiB")."""
    number = text.rstrip("KMGiB")
    unit = text[len(number):]
    if unit not in _UNITS or not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (bytes, or e.g. 64KiB, 16MiB)")
    return int(number) * _UNITS[unit]


def _report_interval(text: str) -> float:
    from meshgrpc.proxy.load_reporter import MAX_INTERVAL_S, MIN_INTERVAL_S
    value = float(text)
    if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"{text!r} is not between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds")
    return value


def _workers(text: str) -> int:
    """A number of proxy workers, or `auto`: one per core this process may run on
    (its CPU affinity, which taskset and cgroup cpusets narrow; os.cpu_count() counts
    every core of the machine)."""
    if text == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers (1 or more, or auto: one per core)")
    return int(text)


def _settle_seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not zero or a positive number of seconds")
    return value


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(text: str) -> float:
    """A positive duration: seconds, or a number with s, m, h or d ("30s", "24h")."""
    unit = text[-1:] if text[-1:] in _DURATION_UNITS else "s"
    number = text[:-1] if text[-1:] in _DURATION_UNITS else text
    try:
        value = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration (e.g. 90s, 30m, 1h, 24h)")
    return value


def _add_credential_flags(parser: argparse.ArgumentParser) -> None:
    """How a client proves who it is to the control plane (control_channel.py)."""
    parser.add_argument("--token-file", default=None, metavar="FILE",
                        help="bearer token to send (default: .meshgrpc/admin.token if it exists; "
                             "MESHGRPC_TOKEN overrides both)")
    parser.add_argument("--ca-file", default=None, metavar="FILE",
                        help="CA bundle the control plane's certificate is checked against "
                             "(default: .meshgrpc/ca.pem, written by the control plane at first start)")
    parser.add_argument("--insecure", action="store_true",
                        help="plaintext, no credential: only for a control plane run with --insecure")


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshgrpc", description="A gRPC-native service mesh.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a config file and print its errors")
    p.add_argument("-f", "--file", required=True)

    p = sub.add_parser("control-plane", help="run the control plane")
    p.add_argument("--config", help="YAML or JSON MeshConfig file, watched for edits")
    p.add_argument("--listen", default=DEFAULT_CONTROL_PLANE, metavar="HOST:PORT")
    p.add_argument("--data-dir", default="./.meshgrpc", help="where the SQLite store lives")
    p.add_argument("--store", default="sqlite", metavar="sqlite|etcd://HOST:PORT,...",
                   help="sqlite (default: one control plane, in --data-dir) or etcd://HOST:PORT[,HOST:PORT...] "
                        "(several replicas share the mesh)")
    p.add_argument("--etcd-prefix", default="/meshgrpc", help="key prefix in etcd (default /meshgrpc)")
    p.add_argument("--debounce", type=float, default=0.1, metavar="SECONDS",
                   help="changes within this window make one push (default 0.1)")
    p.add_argument("--lease-ttl", type=float, default=10.0, metavar="SECONDS",
                   help="registrations silent this long are dropped (default 10)")
    p.add_argument("--config-settle", type=_settle_seconds, default=1.0, metavar="SECONDS",
                   help="an edit of --config is read once the file is unchanged (size, mtime) this long "
                        "(default 1)")
    p.add_argument("--max-removal-share", type=_share, default=1.0, metavar="FRACTION",
                   help="an edit of --config that would remove more than this share (0-1) of the configured "
                        "resources is refused and logged, keeping the last good config; an empty file, or one "
                        "that removes every resource, is always refused (default 1: only that rule)")
    p.add_argument("--min-ping-interval", type=_seconds, default=10.0, metavar="SECONDS",
                   help="clients may send keepalive pings this often on a connection without data; sooner "
                        "ones draw GOAWAY too_many_pings after 2 strikes. Keep it at most the proxies' "
                        "--discovery-keepalive (default 10)")
    p.add_argument("--listen-mtls", default="", metavar="HOST:PORT",
                   help="the port that takes workload certificates (TLS requiring a client certificate from "
                        "the mesh's CA) (default: --listen's host, port 15012; port 0 when --listen's is 0)")
    p.add_argument("--insecure", action="store_true",
                   help="plaintext and no authentication on --listen (anyone who reaches it can change the "
                        "mesh); no CA, no tokens, no --listen-mtls. Logged loudly. Default: TLS and credentials")
    p.add_argument("--trust-domain", default="mesh.local",
                   help="SPIFFE trust domain of workload identities, spiffe://DOMAIN/service/NAME "
                        "(default mesh.local)")
    p.add_argument("--ca-cert", default="", metavar="FILE",
                   help="PEM root certificate of an existing CA (with --ca-key; default: the CA made in "
                        "--data-dir at first start). Replicas on one etcd share one CA this way")
    p.add_argument("--ca-key", default="", metavar="FILE", help="PEM private key of --ca-cert (mode 0600)")
    p.add_argument("--cert-lifetime", type=_duration, default=3600.0, metavar="DURATION",
                   help="how long workload certificates are valid; workloads renew at half of it "
                        "(default 1h; seconds for tests, e.g. 30s)")
    p.add_argument("--tls-san", action="append", default=[], metavar="HOST",
                   help="a name or address clients dial the control plane by, added to its certificate "
                        "(localhost, 127.0.0.1, ::1 and this host's name always are); repeatable")
    p.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                   help=f"the dashboard, its JSON (/api/v1/mesh) and /metrics, read-only (default {DEFAULT_HTTP}; "
                        "'' turns it off)")
    p.add_argument("--load-report-interval", type=_report_interval, default=2.0, metavar="SECONDS",
                   help="how often proxies send load reports, 0.2 to 60 (told to each proxy; default 2)")
    # Test-only: MODULE:FUNCTION replacing the translation for proxyless clients
    # (tests make configs gRPC rejects with it).
    p.add_argument("--proxyless-translator", default="", help=argparse.SUPPRESS)

    p = sub.add_parser("apply", help="apply a config file atomically and print the diff")
    p.add_argument("-f", "--file", required=True)
    p.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    p.add_argument("--replace", action="store_true",
                   help="the file is the whole mesh: remove resources it lacks")
    p.add_argument("--allow-empty", action="store_true",
                   help="with --replace, allow an empty file, which removes every resource (refused otherwise, "
                        "exit 2, after printing what it would remove)")
    _add_control_plane_flag(p)

    p = sub.add_parser("get", help="print resources as served")
    p.add_argument("kind", choices=["clusters", "endpoints", "routes", "listeners", "authorization-policies", "all"])
    p.add_argument("name", nargs="?", default="")
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    _add_control_plane_flag(p)

    p = sub.add_parser("delete", help="delete one resource")
    p.add_argument("kind", choices=["cluster", "endpoints", "route", "listener", "authorization-policy"])
    p.add_argument("name")
    p.add_argument("--dry-run", action="store_true")
    _add_control_plane_flag(p)

    p = sub.add_parser("status", help="one row per connected proxy or proxyless client and its sync state")
    _add_control_plane_flag(p)

    p = sub.add_parser("bootstrap", help="write the GRPC_XDS_BOOTSTRAP file of a proxyless gRPC client")
    p.add_argument("--node-id", required=True, help="the client's node id, as status shows it")
    p.add_argument("--zone", default="", help="the client's zone (its locality)")
    p.add_argument("-o", "--output", default="-", metavar="FILE", help="where to write it (default: stdout)")
    p.add_argument("--service", default="", help="the client's service: its certificate's identity (needed "
                                                 "unless --insecure)")
    p.add_argument("--cert-dir", default="", metavar="DIR",
                   help="where the client's key, certificate and CA bundle are written (needed unless --insecure)")
    p.add_argument("--renew", action="store_true",
                   help="keep running, renewing the certificate in --cert-dir at half-life, until SIGTERM")
    _add_control_plane_flag(p)

    p = sub.add_parser("token", help="create, revoke and list the control plane's tokens (admin only)")
    token = p.add_subparsers(dest="token_command", required=True)
    t = token.add_parser("create", help="print a new token (shown only this once)")
    who = t.add_mutually_exclusive_group(required=True)
    who.add_argument("--service", help="a join token: proves this service's identity to get certificates")
    who.add_argument("--role", choices=["read", "admin"], help="an operator's token")
    t.add_argument("--ttl", type=_duration, default=None, metavar="DURATION",
                   help="how long it may be used (default: 24h for join tokens; read and admin never expire)")
    _add_control_plane_flag(t)
    t = token.add_parser("revoke", help="revoke a token: it authenticates nothing, certificates issued on it "
                                        "stop renewing")
    t.add_argument("id", help="the token's id (the part after mg1.)")
    _add_control_plane_flag(t)
    t = token.add_parser("list", help="every token: id, role, service, expiry (never the secret)")
    _add_control_plane_flag(t)

    p = sub.add_parser("register", help="register a service instance until stopped")
    p.add_argument("--cluster", required=True)
    p.add_argument("--address", required=True, metavar="HOST:PORT")
    p.add_argument("--weight", type=int, default=1)
    p.add_argument("--zone", default="")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    _add_control_plane_flag(p)

    p = sub.add_parser("proxy", help="run the sidecar proxy")
    p.add_argument("--node-id", required=True)
    p.add_argument("--service", default="",
                   help="join as a workload of this service: the token (--token-file or MESHGRPC_TOKEN, a join "
                        "token from `meshgrpc token create --service NAME`) buys a certificate, renewed at "
                        "half-life, which then authenticates the discovery stream (default: none; the token "
                        "alone authenticates)")
    _add_control_plane_flag(p)
    p.add_argument("--listen", default="127.0.0.1:15001", metavar="HOST:PORT")
    p.add_argument("--admin", default="127.0.0.1:15000", metavar="HOST:PORT")
    p.add_argument("--inbound", default="", metavar="HOST:PORT",
                   help="also serve this service's inbound side here (Istio's port: 0.0.0.0:15006): mutual TLS "
                        "from other proxies, each call judged by the service's authorization policies and "
                        "relayed to --app; needs --service (default: no inbound listener)")
    p.add_argument("--inbound-endpoint", default="", metavar="HOST:PORT",
                   help="the address other proxies reach the inbound listener at, registered (with a lease) as "
                        "an endpoint of --service's cluster while the proxy runs (default: the address --inbound "
                        "binds; needed when that is every address)")
    p.add_argument("--app", default="", metavar="HOST:PORT",
                   help="the local application the inbound listener relays to, over h2c (with --inbound)")
    p.add_argument("--route-config", default="default")
    p.add_argument("--discovery", choices=["delta", "sotw"], default="delta",
                   help="delta (default): incremental, subscribing only to the clusters the route config "
                        "reaches; sotw: state of the world, every cluster (for control planes before delta)")
    p.add_argument("--zone", default="")
    p.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                   help="proxy processes sharing the listen port (SO_REUSEPORT), the kernel spreading "
                        "connections between them; auto: one per core (default 1)")
    p.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                   help="an edge limit of the outbound listener (meshgrpc/proxy/listener.py EdgeLimits and "
                        "meshgrpc/codec/limits.py Limits, each with its default), e.g. max_connections=20000")
    p.add_argument("--seed", type=int, default=None,
                   help="seed the proxy's random choices (splits, balancing, faults, mirrors, back-off) "
                        "for a reproducible run (default: random)")
    p.add_argument("--replay-memory", type=_bytes, default=16 << 20, metavar="BYTES",
                   help="request bytes all calls together may keep to retry, hedge or mirror; "
                        "a call that does not fit is not retried (default 16MiB)")
    p.add_argument("--access-log", default="", metavar="PATH",
                   help="one JSON line per call (request and trace ids, route, cluster, endpoint, path, "
                        "statuses, duration, bytes, attempts) to PATH, '-' for standard output; written by a "
                        "thread of its own, lines dropped and counted rather than ever holding a call "
                        "(default: no access log)")
    p.add_argument("--access-log-sample", type=_share, default=1.0, metavar="SHARE",
                   help="the share of calls the access log records, 0 to 1 (default 1)")
    p.add_argument("--trace-headers", choices=["on", "off"], default="on",
                   help="on (default): every call goes upstream with x-request-id (the client's, or a new "
                        "UUID) and a W3C traceparent with this hop's span id (the client's trace, or a new "
                        "one); off: request headers pass as they came (a few microseconds less per call)")
    p.add_argument("--discovery-keepalive", type=_seconds, default=20.0, metavar="SECONDS",
                   help="ping the control plane after this long without data, and reconnect when a ping "
                        "is not answered within 10 s more; the control plane must permit it (its "
                        "--min-ping-interval, default 10) (default 20)")

    p = sub.add_parser("explain", help="ask a proxy which route, cluster and endpoint it would take for a call, "
                                       "and why")
    p.add_argument("path", metavar="/pkg.Service/Method")
    p.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE",
                   help="a request header of the call (repeatable)")
    p.add_argument("--authority", default="", help="the call's :authority (default: the proxy's listen address)")
    p.add_argument("--proxy", default="127.0.0.1:15000", metavar="ADMIN_ADDR",
                   help="the proxy's admin address (default 127.0.0.1:15000)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("demo", help="run a control plane, a proxy and sample backends with a live table")
    p.add_argument("--duration", type=float, default=0.0, metavar="SECONDS",
                   help="stop after this long (default 0: until Ctrl-C); the canary change comes halfway")
    p.add_argument("--canary-after", type=float, default=20.0, metavar="SECONDS",
                   help="when to apply the canary change if --duration is 0 (default 20)")
    p.add_argument("--rate", type=float, default=200.0, help="client calls per second (default 200)")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs after a clean exit")
    p.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                   help=f"the control plane's dashboard (default {DEFAULT_HTTP}; its URL is printed first)")
    return parser


def _run(args: argparse.Namespace) -> int:
    # Imports are per command so that each starts only what it needs.
    if args.command == "validate":
        from meshgrpc.config import commands
        return commands.validate(args)
    if args.command == "control-plane":
        from meshgrpc.controlplane import main
        return main.run(args)
    if args.command == "token":
        from meshgrpc.controlplane import token_commands
        return getattr(token_commands, args.token_command)(args)
    if args.command in ("apply", "get", "delete", "status", "register"):
        from meshgrpc.controlplane import commands
        return getattr(commands, args.command)(args)
    if args.command == "bootstrap":
        from meshgrpc.proxyless import bootstrap
        return bootstrap.run(args)
    if args.command == "proxy":
        from meshgrpc.proxy import main
        return main.run(args)
    if args.command == "explain":
        from meshgrpc import explain_command
        return explain_command.run(args)
    if args.command == "demo":
        from meshgrpc import demo
        return demo.run(args)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
