"""Writing a benchmark run down: the JSON of everything measured, a Markdown
table with the issue's targets beside the numbers, and a PNG of latency
percentiles per path. Targets are reported, never asserted."""

from __future__ import annotations

import json
import os

from bench import mtls

TARGETS = {
    "ack_all_s": 1.0,          # every stream ACKed a change within
    "proxy_rss_mib": 30,       # issue 11: with 1,000 endpoints, at most
    "proxyless_ratio": 0.95,   # issue 12: proxyless throughput vs direct (same grpcio client), at least
    "delta_p99_s": 1.0,        # replicated, scoped: p99 apply-to-ACK of one change, at most
    "stream_kib": 20,          # replicated: control-plane memory per subscribed stream, at most
}
# Issue 11's goals for the meshgrpc path: (what, the summary key, at most/least, bound, unit).
GOALS = (
    ("proxy CPU per call, 64 in flight, 1 connection", "cpu_us_per_call", "≤", 50, " µs"),
    ("proxy CPU per call, 64 in flight, 8 connections", "cpu_us_per_call_8c", "≤", 50, " µs"),
    ("calls/s vs direct, 64 in flight, 1 connection", "ratio", "≥", 0.85, "×"),
    ("calls/s vs direct, 64 in flight, 8 connections", "ratio_8c", "≥", 0.85, "×"),
    ("added p50 at 1 in flight, grpcio client", "grpc_added_p50_ms", "≤", 0.15, " ms"),
    ("bidi stream msgs/s vs direct", "stream_ratio", "≥", 0.95, "×"),
)
COMPARED = ("nghttpx", "haproxy", "nginx")
PERCENTILES = (50, 90, 99, 99.9)


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def _fmt(value, digits: int = 2, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def _digits(bound: float) -> int:
    return 0 if bound >= 10 else 2


def goals(result: dict) -> list[dict]:
    """Each goal with meshgrpc's value, whether it is met (None: not measured), and
    the comparison proxies' values beside it."""
    paths = result.get("paths", {})
    ours = paths.get("meshgrpc", {})
    rows = []
    for what, key, op, bound, unit in GOALS:
        value = ours.get(key)
        met = None if value is None else (value <= bound if op == "≤" else value >= bound)
        rows.append({"goal": what, "target": f"{op} {bound:g}{unit}", "value": value, "digits": _digits(bound),
                     "unit": unit, "met": met,
                     "compared": {name: paths[name].get(key) for name in COMPARED if name in paths}})
    memory = result.get("proxy_memory")
    rss = memory["VmRSS"] / 1024 if memory else None
    rows.append({"goal": f"proxy RSS with {memory['endpoints'] if memory else 1000:,} endpoints",
                 "target": f"≤ {TARGETS['proxy_rss_mib']} MiB", "value": rss, "digits": 1, "unit": " MiB",
                 "met": None if rss is None else rss <= TARGETS["proxy_rss_mib"], "compared": {}})
    return rows


def markdown(result: dict, chart: str | None) -> str:
    lines = [f"# meshgrpc benchmark — {result['timestamp']}", "", _environment(result), ""]
    lines += _paths_table(result)
    lines += _goals_table(result)
    lines += _workers(result)
    lines += _latency_table(result)
    lines += _proxyless_table(result)
    lines += mtls.markdown(result.get("mtls"))
    lines += _checks(result)
    lines += _scale_tables(result)
    lines += _access_log(result)
    lines += _profile(result)
    if chart:
        lines += ["", f"![latency percentiles per path]({os.path.basename(chart)})"]
    lines += ["", "Raw numbers per round: the JSON file of this run (`" + result["json"] + "`)."]
    return "\n".join(lines) + "\n"


def _environment(result: dict) -> str:
    env, cfg = result["environment"], result["config"]
    versions = ", ".join(env.get("comparisons", {}).values()) or "no comparison proxies"
    load_average = " / ".join(f"{x:.1f}" for x in env.get("load_average", ()))
    return (f"{env['cpus']} CPUs (load average {load_average} at the start), Python {env['python']}, "
            f"{env['h2load']}, {versions}, commit {env.get('commit', '?')}. {cfg['rounds']} interleaved rounds; "
            f"unary {cfg['payload']} B payloads, {cfg['in_flight']} in flight over one h2load connection and over "
            f"{cfg.get('connections', 8)} ({cfg['seconds']:g} s per path per round each), and 1 in flight "
            f"({cfg['latency_seconds']:g} s); medians of the rounds.")


def _paths_table(result: dict) -> list[str]:
    n = result["config"].get("connections", 8)
    lines = ["## Data path", "",
             f"| path | calls/s @64, 1 conn | × direct | calls/s @64, {n} conns | × direct "
             f"| proxy CPU µs/call (1 / {n} conns) | added p50 @1, h2load (ms) | added p50 @1, grpcio (ms) "
             "| bidi msgs/s (× direct) | proxy RSS after the load (MiB) |", "|" + "---|" * 10]
    for name, p in result["paths"].items():
        memory = p.get("memory_kib")
        lines.append(
            f"| {name} | {_fmt(p.get('calls_per_s'), 0)} | {_fmt(p.get('ratio'), 2, '×')} "
            f"| {_fmt(p.get('calls_per_s_8c'), 0)} | {_fmt(p.get('ratio_8c'), 2, '×')} "
            f"| {_fmt(p.get('cpu_us_per_call'), 0)} / {_fmt(p.get('cpu_us_per_call_8c'), 0)} "
            f"| {_fmt(p.get('added_p50_ms'), 3)} | {_fmt(p.get('grpc_added_p50_ms'), 3)} "
            f"| {_fmt(p.get('stream_msgs_per_s'), 0)} ({_fmt(p.get('stream_ratio'), 2, '×')}) "
            f"| {_memory(memory)} |")
    for name, why in result.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} |" + "|" * 8)
    lines += ["", "× direct and added p50: per round against direct, then the median over rounds. proxy CPU: "
              "utime+stime of the proxy's processes (a master and its workers) per call, from /proc/PID/stat. "
              "h2load @1: its per-request time, one call in flight. grpcio @1: sequential unary calls from a grpcio "
              "sync client in the harness, timed on the client: what an application sees, including the client's "
              "own gRPC work and the two WINDOW_UPDATE frames grpcio adds to every request. RSS: VmRSS summed over "
              "the proxy's processes once the rounds are over (PSS beside it where they share many pages)."]
    return lines


def _memory(memory: dict | None) -> str:
    """RSS in MiB; for a proxy of several processes also their PSS, which counts the
    pages they share (a forked worker's with its parent) once."""
    if not memory:
        return "—"
    rss = f"{memory['VmRSS'] / 1024:.1f}"
    pss = memory.get("Pss")
    return rss if pss is None or pss >= 0.9 * memory["VmRSS"] else f"{rss} (PSS {pss / 1024:.1f})"


def _goals_table(result: dict) -> list[str]:
    rows = goals(result)
    compared = [name for name in COMPARED if name in result["paths"]]
    lines = ["", "## Issue 11's goals, checked on meshgrpc", "",
             "| goal | target | meshgrpc | | " + " | ".join(compared) + " |", "|" + "---|" * (4 + len(compared))]
    for row in rows:
        verdict = {None: "not measured", True: "✅ met", False: "❌ not met"}[row["met"]]
        others = [_fmt(row["compared"].get(name), row["digits"], row["unit"]) for name in compared]
        lines.append(f"| {row['goal']} | {row['target']} | {_fmt(row['value'], row['digits'], row['unit'])} "
                     f"| {verdict} | " + " | ".join(others) + " |")
    met = sum(1 for row in rows if row["met"])
    lines += ["", f"{met} of {len(rows)} goals met."]
    return lines


def _workers(result: dict) -> list[str]:
    w, cfg = result.get("workers"), result["config"]
    if not w:
        return []
    n, runs = str(w["workers"]), w["runs"]
    lines = ["", f"## `meshgrpc proxy --workers`: 1 vs {n} workers", "",
             f"{cfg['in_flight']} in flight over {cfg.get('connections', 8)} connections (the kernel spreads "
             "connections between the workers that share the port with SO_REUSEPORT), in the same rounds; the "
             "backend is one grpc.aio process.", "",
             "| workers | calls/s | × 1 worker | proxy CPU µs/call | backend cores used | machine busy |",
             "|---|---|---|---|---|---|"]
    for label, key in (("1", "1"), (n, n), ("direct (no proxy)", "direct")):
        run = runs[key]
        scaling = {"1": "1.00×", n: _fmt(w["scaling"], 2, "×")}.get(key, "")
        lines.append(f"| {label} | {_fmt(run['calls_per_s'], 0)} | {scaling} | {_fmt(run['cpu_us_per_call'], 0)} "
                     f"| {_fmt(run['backend_cores'], 2)} | {_fmt(run['machine_busy'] * 100, 0, '%')} |")
    return lines + ["", f"{n} workers reach {_fmt(w['of_direct'], 2, '×')} direct's throughput. "
                        f"The limit is {w['limit']}."]


def _latency_table(result: dict) -> list[str]:
    n = result["config"].get("connections", 8)
    lines = ["", "### Latency at 1 in flight, and the backend's cost", "",
             f"| path | h2load p50 / p99 (ms) | grpcio p50 / p99 (ms) | backend CPU µs/call (1 / {n} conns) |",
             "|---|---|---|---|"]
    for name, p in result["paths"].items():
        backend = f"{_fmt(p.get('backend_cpu_us_per_call'), 0)} / {_fmt(p.get('backend_cpu_us_per_call_8c'), 0)}"
        lines.append(f"| {name} | {_fmt(p.get('p50_ms'), 3)} / {_fmt(p.get('p99_ms'), 3)} "
                     f"| {_fmt(p.get('grpc_p50_ms'), 3)} / {_fmt(p.get('grpc_p99_ms'), 3)} | {backend} |")
    return lines


def _proxyless_table(result: dict) -> list[str]:
    got = result.get("proxyless")
    if not got:
        return []
    cfg = got["config"]
    lines = ["", f"Proxyless (bench/proxyless.py): the same grpc.aio client on each path, {cfg['in_flight']} in flight "
             f"({cfg['seconds']:g} s per path per round), then {cfg['latency_calls']} sequential calls; "
             f"{cfg['rounds']} interleaved rounds, medians.", "",
             "| path | calls/s | vs direct | client CPU (µs/call) | p50 @1 (ms) | p99 @1 (ms) | added p50 (ms) |",
             "|---|---|---|---|---|---|---|"]
    for name, p in got["paths"].items():
        mark = _mark(p["ratio"] >= TARGETS["proxyless_ratio"]) + f" (≥ {TARGETS['proxyless_ratio']}×)" \
            if name == "proxyless" else ""
        lines.append(f"| {name} | {p['calls_per_s']:.0f} | {p['ratio']:.2f}×{mark} | {p['client_cpu_us_per_call']:.0f} | "
                     f"{p['p50_ms']:.3f} | {p['p99_ms']:.3f} | {p['added_p50_ms']:+.3f} |")
    return lines


def _checks(result: dict) -> list[str]:
    c = result["checks"]
    lines = ["", "## Every call ended with grpc-status 0", ""]
    lines.append(f"- {'✅' if c['ok'] else '❌'} " + c["summary"])
    for problem in c["problems"][:20]:
        lines.append(f"  - {problem}")
    return lines


def _scale_tables(result: dict) -> list[str]:
    lines = []
    s = result.get("control_plane")
    if s:
        lines += ["", "## Control plane at scale", "",
                  f"{s['streams']} simulated proxies (raw discovery streams from {s['client_processes']} processes), "
                  f"{s['endpoints']} endpoints in {s['clusters']} clusters; initial sync of every stream took "
                  f"{s['initial_sync_s']:.2f} s. Times run from the Apply call to each stream's ACK.", "",
                  "| change | streams ACKed | p50 (s) | p99 (s) | max (s) | target | control plane CPU (s) |",
                  "|---|---|---|---|---|---|---|"]
        for key, label in (("endpoint_change", "one endpoint added (all EndpointSets resent)"),
                           ("route_change", "one route's timeout changed")):
            ch = s[key]
            ok = ch.get("max_s") is not None and ch["max_s"] <= TARGETS["ack_all_s"] and not ch["missing"]
            lines.append(f"| {label} | {ch['acked']}/{s['streams']} | {_fmt(ch.get('p50_s'), 3)} | "
                         f"{_fmt(ch.get('p99_s'), 3)} | {_fmt(ch.get('max_s'), 3)} | all ≤ {TARGETS['ack_all_s']:g} s"
                         f"{_mark(ok)} | {ch['control_plane_cpu_s']:.2f} |")
        mem = s["control_plane_memory_kib"]
        lines += ["", f"Control plane memory: peak (VmHWM) {mem['VmHWM'] / 1024:.0f} MiB, "
                      f"RSS at the end {mem['VmRSS'] / 1024:.0f} MiB."]
    lines += _replicated(result.get("control_plane_replicated"))
    m = result.get("proxy_memory")
    if m:
        rss = m["VmRSS"] / 1024
        lines += ["", "## Proxy memory", "", "| endpoints | RSS (MiB) | peak (MiB) | target |", "|---|---|---|---|"]
        idle = result.get("paths", {}).get("meshgrpc", {}).get("memory_kib")
        if idle:
            lines.append(f"| 1 (the bench proxy, after the load) | {idle['VmRSS'] / 1024:.1f} "
                         f"| {idle['VmHWM'] / 1024:.1f} | |")
        lines.append(f"| {m['endpoints']} | {rss:.1f} | {m['VmHWM'] / 1024:.1f} | ≤ {TARGETS['proxy_rss_mib']} MiB"
                     f"{_mark(rss <= TARGETS['proxy_rss_mib'])} |")
    return lines


def _replicated(r: dict | None) -> list[str]:
    if not r:
        return []
    per_stream = r["memory_per_stream_kib"]
    lines = ["", "## Replicated control plane, delta discovery, scoped proxies", "",
             f"{r['proxies']} simulated proxies (delta streams from {r['client_processes']} processes, "
             f"{r.get('streams_per_connection', 100)} to an HTTP/2 connection) over "
             f"{r['replicas']} control-plane replicas on a {r['etcd_members']}-member etcd; {r['endpoints']} endpoints "
             f"in {r['clusters']} clusters; each proxy's route config reaches {r['clusters_per_proxy']} clusters. "
             f"Initial sync of every stream: {r['initial_sync_s']:.2f} s. Times run from the Apply call returning "
             "to each affected proxy's ACK (below 0: the proxy had it before the caller heard back), and in "
             "brackets from the Apply call being sent.", "",
             "| change | proxies affected / ACKed | p50 (s) | p99 (s) | max (s) | target | bytes to them | "
             "responses to the others | control plane CPU (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, label in (("endpoint_change", "one endpoint added to one cluster"),
                       ("route_change", "one route config's timeout changed")):
        ch = r[key]
        ok = ch.get("p99_s") is not None and ch["p99_s"] <= TARGETS["delta_p99_s"] and not ch["missing"]
        lines.append(f"| {label} | {ch['affected_proxies']} / {ch['acked']} | {_fmt(ch.get('p50_s'), 3)} "
                     f"({_fmt(ch.get('p50_from_call_s'), 3)}) | {_fmt(ch.get('p99_s'), 3)} "
                     f"({_fmt(ch.get('p99_from_call_s'), 3)}) | {_fmt(ch.get('max_s'), 3)} "
                     f"({_fmt(ch.get('max_from_call_s'), 3)}) | p99 ≤ {TARGETS['delta_p99_s']:g} s"
                     f"{_mark(ok)} | {ch['bytes_to_affected']} | {ch['responses_to_others']} | "
                     f"{ch['control_plane_cpu_s']:.2f} |")
    floor, aio = r.get("server_stream_floor_kib"), r.get("grpc_aio_stream_floor_kib")
    lines += ["", f"Control-plane memory per subscribed stream: {per_stream:.1f} KiB "
                  f"(target ≤ {TARGETS['stream_kib']} KiB{_mark(per_stream <= TARGETS['stream_kib'])})"
                  + (f"; an idle stream on the control plane's gRPC server with nothing else of meshgrpc costs "
                     f"{floor:.1f} KiB on its own, on grpc.aio {aio:.1f} KiB (bench/stream_floor.py)."
                     if floor is not None and aio is not None else ".")]
    return lines


def _access_log(result: dict) -> list[str]:
    a = result.get("access_log")
    if not a:
        return []
    return ["", "## Access log (sample 1.0)", "",
            f"{a['calls']} calls: `log()` on the event loop {a['log_call_us']:.2f} µs per call; the whole "
            f"process's CPU, writer thread included, {a['cpu_us_per_line']:.1f} µs per line "
            f"({a['bytes_per_line']:.0f} bytes); {a['written']} written, {a['dropped']} dropped."]


def _profile(result: dict) -> list[str]:
    prof = result.get("profile")
    if not prof:
        return []
    if "error" in prof:
        return ["", "## Proxy profile", "", f"skipped: {prof['error']}"]
    lines = ["", "## Proxy profile (py-spy, under the 64-in-flight load)", "",
             f"{prof['samples']} samples over {prof['seconds']:g} s. Share of samples:", "",
             "| self % | function (where it is running) | | inclusive % | function (on the stack) |", "|---|---|---|---|---|"]
    rows = max(len(prof["self"]), len(prof["inclusive"]))
    for i in range(min(rows, 20)):
        s = prof["self"][i] if i < len(prof["self"]) else ("", "")
        n = prof["inclusive"][i] if i < len(prof["inclusive"]) else ("", "")
        lines.append(f"| {s[1]} | `{s[0]}` | | {n[1]} | `{n[0]}` |")
    return lines


def chart(result: dict, path: str) -> str | None:
    """Grouped bars: latency percentile (1 in flight) per path. None when matplotlib is absent."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    paths = [name for name, p in result["paths"].items() if "percentiles_ms" in p]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(paths))
    for i, name in enumerate(paths):
        values = [result["paths"][name]["percentiles_ms"][str(q)] for q in PERCENTILES]
        bars = ax.bar([x + i * width for x in range(len(PERCENTILES))], values, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([x + width * (len(paths) - 1) / 2 for x in range(len(PERCENTILES))],
                  [f"p{q:g}" for q in PERCENTILES])
    ax.set_yscale("log")  # p99.9 is an order of magnitude above p50
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("Unary echo, 100 B, 1 call in flight (all rounds pooled)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: dict, out_dir: str) -> dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    stamp = result["timestamp"]
    json_path = os.path.join(out_dir, f"{stamp}.json")
    result["json"] = os.path.basename(json_path)
    chart_path = chart(result, os.path.join(out_dir, f"{stamp}-latency.png"))
    with open(json_path, "w") as f:
        json.dump(result, f, indent=2)
    md_path = os.path.join(out_dir, "results.md")
    with open(md_path, "w") as f:
        f.write(markdown(result, chart_path))
    return {"json": json_path, "markdown": md_path, "chart": chart_path or "(matplotlib missing: no chart)"}
