"""`meshgrpc explain /pkg.Service/Method [-H name:value]... [--authority A]
[--proxy ADMIN_ADDR] [-o json]`: asks a proxy's admin port (GET /explain) what
it would do with that call now, and prints it: the virtual host and route that
match (and why each other route did not), the cluster (the weighted split's
draw) and, for each cluster the route can send to, every endpoint with the
picker's inputs and score, and the one it would take and why.

Exit codes: 0 explained; 1 the proxy refused the question (bad input); 2 the
proxy cannot be reached.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_PROXY = "127.0.0.1:15000"
TIMEOUT_S = 5.0


def run(args) -> int:
    query = [("path", args.path)] + [("header", h) for h in args.header]
    if args.authority:
        query.append(("authority", args.authority))
    url = f"http://{args.proxy}/explain?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as e:
        print(f"meshgrpc explain: the proxy refused: {e.read().decode(errors='replace').strip()}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"meshgrpc explain: cannot ask the proxy at {args.proxy}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(data, indent=2, sort_keys=True) if args.output == "json" else render(data))
    return 0


def render(data: dict) -> str:
    """The explanation as text for a terminal."""
    call = data["call"]
    headers = ", ".join(f"{n}: {v}" for n, v in call["headers"]) or "none"
    lines = [f"call {call['path']}   authority {call['authority']}   headers {headers}"]
    routing = data.get("routing")
    if routing is not None:
        lines += _routing(routing)
    if "split" in data:
        lines += _split(data["split"])
        for cluster in data["clusters"]:
            lines += _cluster(cluster, chosen=cluster["cluster"] == data["split"]["chosen"])
    lines.append(f"=> {data['outcome']}")
    return "\n".join(lines)


def _routing(routing: dict) -> list[str]:
    lines = [f"route config {routing['route_config']}: virtual host {routing['virtual_host'] or '(none)'}"
             f" ({routing['virtual_host_why']})"]
    routes = routing.get("routes", [])
    if routes:
        lines.append("routes, in order (the first match wins):")
        width = max(len(r["route"]) for r in routes)
        for r in routes:
            mark = "*" if r["chosen"] else " "
            lines.append(f"  {mark} {r['route'].ljust(width)}  [{r['match']}]  {r['verdict']}")
    return lines


def _split(split: dict) -> list[str]:
    shares = ", ".join(f"{c['cluster']} {c['share'] * 100:g}%" for c in split["clusters"])
    return [f"cluster: {split['chosen']}  (split {shares}; {split['why']})"]


COLUMNS = ("ENDPOINT", "ZONE", "WEIGHT", "HEALTH", "RTT EST ms", "PENDING", "IN FLIGHT", "SCORE", "")


def _cluster(cluster: dict, chosen: bool) -> list[str]:
    head = (f"{'picker' if chosen else 'picker (if the split drew it)'} of cluster {cluster['cluster']}: "
            f"{cluster.get('lb_policy', '?')} ({cluster.get('picker', '?')})"
            f"{', PANIC: balancing over every eligible endpoint' if cluster.get('panic') else ''}"
            f"{', local zone ' + repr(cluster['local_zone']) + ' only' if cluster.get('local_zone_only') else ''}")
    rows = [COLUMNS] + [_row(e, cluster) for e in cluster.get("endpoints", [])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    table = ["    " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    tail = [f"    score: {cluster['score']}"] if cluster.get("score") else []
    return [head, *table, *tail, f"    takes {cluster.get('chosen') or 'nothing'}: {cluster['why']}"]


def _row(e: dict, cluster: dict) -> tuple[str, ...]:
    note = "<- takes" if e["address"] == cluster.get("chosen") else ""
    if e["address"] in cluster.get("drawn", []) and not note:
        note = "drawn"
    if not e["balanced_over"]:
        note = "left out: " + e.get("left_out", "")
    health = e["health"] + (f", ejected {e['ejected_for_s']:.1f}s" if e["ejected_for_s"] is not None else "")
    score = "" if e["score"] is None else f"{e['score']:.6g}"
    return (e["address"], e["zone"] or "-", str(e["weight"]), health, f"{e['rtt_estimate_s'] * 1000:.2f}",
            str(e["pending"]), str(e["in_flight"]), score, note)
