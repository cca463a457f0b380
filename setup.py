"""Build step: the codec's hot modules (meshgrpc/codec, COMPILED_MODULES) compiled
with Cython at install time. Cython comes from the build's own environment
(pyproject [build-system] requires). Each extension is optional: without a C
compiler (or Python headers) the build warns and the same modules run as plain
Python; tests/unit/test_codec_build.py fails if a compiler is present but the
plain modules were loaded. MESHGRPC_CODEC_NO_COMPILE=1 skips compiling."""

import ast
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError

_NO_COMPILER = (CCompilerError, CompileError, ExecError, PlatformError, OSError)

HERE = os.path.dirname(os.path.abspath(__file__))
CODEC = os.path.join("meshgrpc", "codec")


def _compiled_modules() -> tuple[str, ...]:
    """COMPILED_MODULES from meshgrpc/codec/__init__.py (one list, read not imported)."""
    with open(os.path.join(HERE, CODEC, "__init__.py")) as f:
        for node in ast.parse(f.read()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED_MODULES":
                return ast.literal_eval(node.value)
    raise RuntimeError("COMPILED_MODULES not found in meshgrpc/codec/__init__.py")


def _extensions() -> list:
    if os.environ.get("MESHGRPC_CODEC_NO_COMPILE", "") not in ("", "0"):
        return []
    from Cython.Build import cythonize

    extensions = [Extension(f"meshgrpc.codec.{name}", [os.path.join(CODEC, name + ".py")], optional=True)
                  for name in _compiled_modules()]
    return cythonize(extensions, build_dir=os.path.join("build", "cython"), quiet=True,
                     compiler_directives={"language_level": 3, "annotation_typing": False})


class OptionalBuildExt(build_ext):
    """Builds each codec extension if it can; without a working C compiler it
    says so and leaves the plain module (setuptools' `optional` is not honoured
    by editable installs)."""

    def run(self) -> None:
        try:
            super().run()
        except _NO_COMPILER as e:
            self._skipped("all", e)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except _NO_COMPILER as e:
            self._skipped(ext.name, e)

    def get_outputs(self) -> list:
        return [p for p in super().get_outputs() if os.path.exists(p)]

    def _skipped(self, name: str, err: Exception) -> None:
        self.warn(f"meshgrpc.codec: {name} not compiled ({err}); the plain Python module runs instead")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
