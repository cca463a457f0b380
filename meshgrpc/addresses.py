"""Parsing "host:port" endpoint and listen addresses, one way everywhere."""

from __future__ import annotations


def split_address(address: str, *, listen: bool = False) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; raises ValueError otherwise.
    A listen address may use port 0 (the system picks a free port)."""
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
    else:
        host, sep, port = address.rpartition(":")
    lowest = 0 if listen else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port with a port in {lowest}-65535")
    return host, int(port)


def split_targets(value: str) -> list[str]:
    """The "host:port" items of a comma list (`--control-plane a:15010,b:15010`);
    raises ValueError naming the first bad one."""
    targets = [t.strip() for t in value.split(",") if t.strip()]
    if not targets:
        raise ValueError(f"{value!r}: expected host:port[,host:port...]")
    for target in targets:
        split_address(target)
    return targets
