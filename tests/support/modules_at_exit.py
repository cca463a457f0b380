"""Runs `meshgrpc ARGS...` in this process and, once it exits, writes the name of
every module it imported, one a line, to OUT; so a test can ask what a real,
running meshgrpc process (e.g. the proxy) loaded over its whole life:

    python -m tests.support.modules_at_exit OUT proxy --node-id p ...

Imports nothing of its own beyond the standard library before meshgrpc starts.
"""

from __future__ import annotations

import sys


def main() -> int:
    out, args = sys.argv[1], sys.argv[2:]
    from meshgrpc.cli import main as meshgrpc_main

    try:
        return meshgrpc_main(args)
    finally:
        with open(out, "w") as f:
            f.write("\n".join(sorted(sys.modules)) + "\n")


if __name__ == "__main__":
    sys.exit(main())
