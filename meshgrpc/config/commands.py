"""`meshgrpc validate -f FILE`: load and validate a config file offline, print
every error (one per line, on stderr) or a one-line summary, and return the exit code:
0 valid, 1 invalid (or missing), 2 refused unjudged: past a parsing bound (config/bounds.py)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from meshapi.v1 import resources_pb2
from meshgrpc.config import loader, validate as rules
from meshgrpc.errors import ConfigError, FieldError, LimitExceeded


def validate(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """0 when the file is valid, 1 when it is not, 2 when it is past a bound."""
    out, err = out or sys.stdout, err or sys.stderr
    path = args.file
    if not os.path.isfile(path):
        print(f"{path}: no such file", file=err)
        return 1
    try:
        mesh = loader.load_file(path)
    except ConfigError as e:
        _print_errors(path, e.errors, err, refused=isinstance(e, LimitExceeded))
        return 2 if isinstance(e, LimitExceeded) else 1
    errors = rules.validate_mesh(mesh)
    if errors:
        _print_errors(path, errors, err)
        return 1
    print(f"{path}: valid ({summary(mesh)})", file=out)
    return 0


def _print_errors(path: str, errors: list[FieldError], err: TextIO, refused: bool = False) -> None:
    for error in errors:
        print(f"{path}: {error}", file=err)
    print(f"{path}: {'refused' if refused else 'invalid'} ({_count(len(errors), 'error')})", file=err)


def summary(mesh: resources_pb2.MeshConfig) -> str:
    """e.g. "2 clusters, 3 endpoints in 2 sets, 1 route config"."""
    endpoints = sum(len(s.endpoints) for s in mesh.endpoints)
    return (f"{_count(len(mesh.clusters), 'cluster')}, {_count(endpoints, 'endpoint')} in "
            f"{_count(len(mesh.endpoints), 'set')}, {_count(len(mesh.routes), 'route config')}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
