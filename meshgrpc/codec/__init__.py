"""meshgrpc's HTTP/2 codec for relaying: frames, HPACK, one connection's state and
the limits of a hardened edge, sans I/O (no sockets, no asyncio, no h2).

The modules in COMPILED_MODULES are compiled with Cython when the package is
installed (setup.py) and run as plain Python where no C compiler was found.
MESHGRPC_CODEC_PURE=1 in the environment makes this package load the plain
Python sources even when compiled ones exist (to test both); `COMPILED` says
which ones were loaded.
"""

from __future__ import annotations

import importlib.util
import os
import sys

# In dependency order: each is loaded before the modules that import it.
COMPILED_MODULES = ("huffman", "frames", "streams", "headers", "hpack", "guard", "connection")
PURE_ENV = "MESHGRPC_CODEC_PURE"


def _load_pure_sources() -> None:
    """Import each compiled module from its .py file, before anything else does."""
    here = os.path.dirname(__file__)
    for name in COMPILED_MODULES:
        full = f"{__name__}.{name}"
        spec = importlib.util.spec_from_file_location(full, os.path.join(here, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)


if os.environ.get(PURE_ENV, "") not in ("", "0"):
    _load_pure_sources()

from meshgrpc.codec import connection as _connection  # noqa: E402,F401 (loads every compiled module)

# True when every module in COMPILED_MODULES was loaded from an extension module.
COMPILED: bool = all(not sys.modules[f"{__name__}.{name}"].__file__.endswith(".py")
                     for name in COMPILED_MODULES)

from meshgrpc.codec.connection import Connection  # noqa: E402
from meshgrpc.codec.errors import (  # noqa: E402
    CannotOpenStream, CodecError, ConnectionFailed, FlowControlBlocked, GoingAway, StreamClosed,
    TooManyStreams,
)
from meshgrpc.codec.hpack import NeverIndexed  # noqa: E402
from meshgrpc.codec.limits import DEFAULT_LIMITS, Counters, Limits  # noqa: E402

__all__ = [
    "COMPILED", "CannotOpenStream", "CodecError", "Connection", "ConnectionFailed", "Counters",
    "DEFAULT_LIMITS", "FlowControlBlocked", "GoingAway", "Limits", "NeverIndexed", "StreamClosed",
    "TooManyStreams",
]
