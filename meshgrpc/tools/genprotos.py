"""Regenerates the Python stubs (and .pyi typing stubs) for protos/ into a folder.

`make protos` runs this into generated/; a test runs it into a temporary folder and
compares, so the committed code always matches the protos.
"""

import pathlib
import sys

import google.rpc
import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[pathlib.Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def include_paths() -> list[str]:
    # Well-known types ship with grpcio-tools; google/rpc/status.proto with
    # googleapis-common-protos.
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    googleapis = pathlib.Path(next(iter(google.rpc.__path__))).parents[1]
    return [str(PROTO_ROOT), str(well_known), str(googleapis)]


def generate(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    args = ["protoc", *(f"-I{p}" for p in include_paths())]
    args += [f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
    args += [str(f.relative_to(PROTO_ROOT)) for f in proto_files()]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    _add_package_markers(out)


def _add_package_markers(out: pathlib.Path) -> None:
    # Regular packages (not namespace ones) so setuptools finds and installs them.
    for folder in (p for p in out.rglob("*") if p.is_dir()):
        if folder.name != "__pycache__":
            (folder / "__init__.py").touch()


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "generated"))
