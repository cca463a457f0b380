"""The codec's build: compiled by `make install` wherever a C compiler exists
(a silent fallback to the plain modules must not hide a broken build), never
stale against its sources, and loadable uncompiled on request."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import meshgrpc.codec as codec

PURE = os.environ.get(codec.PURE_ENV, "") not in ("", "0")


def _compiler_present() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    return shutil.which(cc) is not None and os.path.exists(headers)


@pytest.mark.skipif(PURE, reason=f"{codec.PURE_ENV} asks for the plain modules")
def test_compiled_modules_are_loaded_where_a_compiler_exists():
    if not _compiler_present():
        pytest.skip("no C compiler or Python headers: the plain modules are expected")
    loaded = {name: sys.modules[f"meshgrpc.codec.{name}"].__file__ for name in codec.COMPILED_MODULES}
    assert codec.COMPILED, f"a C compiler is present but plain modules were loaded: {loaded}"


@pytest.mark.skipif(PURE, reason=f"{codec.PURE_ENV} asks for the plain modules")
def test_compiled_modules_are_not_older_than_their_sources():
    if not codec.COMPILED:
        pytest.skip("not compiled")
    for name in codec.COMPILED_MODULES:
        module = sys.modules[f"meshgrpc.codec.{name}"]
        source = os.path.join(os.path.dirname(module.__file__), name + ".py")
        assert os.path.getmtime(module.__file__) >= os.path.getmtime(source), \
            f"{module.__file__} is older than {source}: run `make install` to rebuild"


def test_the_environment_variable_loads_the_plain_modules():
    env = {**os.environ, codec.PURE_ENV: "1"}
    out = subprocess.run([sys.executable, "-c", "import meshgrpc.codec as c, meshgrpc.codec.hpack as h;"
                          "print(c.COMPILED, h.__file__)"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out[0] == "False" and out[1].endswith("hpack.py")


def test_the_codec_imports_no_http2_or_grpc_library():
    code = ("import sys, meshgrpc.codec; bad = [m for m in ('h2', 'hpack', 'hyperframe', 'grpc', 'asyncio')"
            " if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
