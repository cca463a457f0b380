"""Writing a benchmark run down: the JSON of everything measured, a Markdown
table with the issue's targets beside the numbers, and a PNG of latency
percentiles per path. Targets are reported, never asserted."""

from __future__ import annotations

import json
import os

from bench import mtls

# Issue 5's targets for this stage.
TARGETS = {
    "ratio": 0.7,              # proxy unary throughput vs direct, at least
    "added_p50_ms": 0.35,      # at 1 in flight, at most
    "cpu_us_per_call": 250,    # proxy CPU per call, at most
    "ack_all_s": 1.0,          # every stream ACKed a change within
    "proxy_rss_mib": 40,       # with 1,000 endpoints, at most
    "proxyless_ratio": 0.95,   # issue 12: proxyless throughput vs direct (same grpcio client), at least
    "delta_p99_s": 1.0,        # replicated, scoped: p99 apply-to-ACK of one change, at most
    "stream_kib": 20,          # replicated: control-plane memory per subscribed stream, at most
}
PERCENTILES = (50, 90, 99, 99.9)


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def _fmt(value, digits: int = 2, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def markdown(result: dict, chart: str | None) -> str:
    lines = [f"# meshgrpc benchmark — {result['timestamp']}", "", _environment(result), ""]
    lines += _paths_table(result)
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
    return (f"{env['cpus']} CPUs, Python {env['python']}, {env['h2load']}, {env.get('nginx') or 'nginx: skipped'}, "
            f"commit {env.get('commit', '?')}. {cfg['rounds']} interleaved rounds; unary {cfg['payload']} B payloads "
            f"over one h2load connection, {cfg['in_flight']} in flight ({cfg['seconds']:g} s per path per round) "
            f"and 1 in flight ({cfg['latency_seconds']:g} s); medians of the rounds.")


def _paths_table(result: dict) -> list[str]:
    head = ("| path | calls/s @64 | vs direct | p50 @1 (ms) | p99 @1 (ms) | added p50 (ms) "
            "| grpc client p50 / p99 @1 (ms) | grpc client added p50 (ms) | proxy CPU/call (µs) "
            "| backend CPU/call (µs) | bidi stream msgs/s |")
    lines = ["## Data path", "", head, "|" + "---|" * 11]
    for name, p in result["paths"].items():
        is_mesh = name == "meshgrpc"
        ratio = p.get("ratio")
        ratio_s = _fmt(ratio, 2, "×") + (f"{_mark(ratio >= TARGETS['ratio'])} (≥ {TARGETS['ratio']}×)" if is_mesh else "")
        added = p.get("added_p50_ms")
        added_s = _fmt(added, 3) + (f"{_mark(added <= TARGETS['added_p50_ms'])} (≤ {TARGETS['added_p50_ms']})"
                                    if is_mesh and added is not None else "")
        gadded = p.get("grpc_added_p50_ms")
        gadded_s = _fmt(gadded, 3) + (f"{_mark(gadded <= TARGETS['added_p50_ms'])} (≤ {TARGETS['added_p50_ms']})"
                                      if is_mesh and gadded is not None else "")
        glat_s = f"{_fmt(p.get('grpc_p50_ms'), 3)} / {_fmt(p.get('grpc_p99_ms'), 3)}"
        cpu = p.get("cpu_us_per_call")
        cpu_s = _fmt(cpu, 0) + (f"{_mark(cpu <= TARGETS['cpu_us_per_call'])} (≤ {TARGETS['cpu_us_per_call']})"
                                if is_mesh and cpu is not None else "")
        lines.append(f"| {name} | {p['calls_per_s']:.0f} | {ratio_s} | {p['p50_ms']:.3f} | {p['p99_ms']:.3f} | "
                     f"{added_s} | {glat_s} | {gadded_s} | {cpu_s} | {_fmt(p.get('backend_cpu_us_per_call'), 0)} | "
                     f"{p['stream_msgs_per_s']:.0f} |")
    for name, why in result.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} ||||||||||")
    lines += ["", "proxy CPU: utime+stime of the proxy process (nginx: master + worker) per call, from /proc/PID/stat. "
              "added p50: the per-round difference to direct, median over rounds. p50/p99 @1: h2load, one call "
              "in flight (its per-request time). grpc client: sequential unary calls from a grpcio sync client in "
              "the harness, timed on the client: what an application sees, including the client's own gRPC work "
              "and the two WINDOW_UPDATE frames grpcio adds to every request."]
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
        if result.get("proxy_rss_idle_kib"):
            lines.append(f"| 1 (the bench proxy, after the load) | {result['proxy_rss_idle_kib'] / 1024:.1f} | — | |")
        lines.append(f"| {m['endpoints']} | {rss:.1f} | {m['VmHWM'] / 1024:.1f} | ≤ {TARGETS['proxy_rss_mib']} MiB"
                     f"{_mark(rss <= TARGETS['proxy_rss_mib'])} |")
    return lines


def _replicated(r: dict | None) -> list[str]:
    if not r:
        return []
    per_stream = r["memory_per_stream_kib"]
    lines = ["", "## Replicated control plane, delta discovery, scoped proxies", "",
             f"{r['proxies']} simulated proxies (delta streams from {r['client_processes']} processes) over "
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
    floor = r.get("grpc_stream_floor_kib")
    lines += ["", f"Control-plane memory per subscribed stream: {per_stream:.1f} KiB "
                  f"(target ≤ {TARGETS['stream_kib']} KiB{_mark(per_stream <= TARGETS['stream_kib'])})"
                  + (f"; an idle grpc.aio stream with nothing of meshgrpc costs {floor:.1f} KiB on its own "
                     "(bench/stream_floor.py)." if floor is not None else ".")]
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
    paths = list(result["paths"])
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
