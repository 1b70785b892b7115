"""Build hook: compile the gettext catalogues (``.po``) into ``.mo`` files in the wheel.

Everything else about the package is in pyproject.toml. The compiler is ``ospp.cli.i18n``'s own
(the same one that compiles a catalogue in memory in a source checkout), loaded by file path so
that the build needs nothing but setuptools.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _i18n() -> ModuleType:
    sys.path.insert(0, str(ROOT))  # ospp.core.errors, imported by i18n (standard library only)
    try:
        spec = importlib.util.spec_from_file_location("_ospp_i18n", ROOT / "ospp/cli/i18n.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT))


class BuildWithCatalogues(build_py):
    """build_py, then ``ospp.mo`` beside each ``ospp.po`` in the build directory."""

    def run(self) -> None:
        super().run()
        i18n = _i18n()
        for po in sorted((Path(self.build_lib) / "ospp/cli/locale").glob("*/LC_MESSAGES/*.po")):
            po.with_suffix(".mo").write_bytes(i18n.compiled(po.read_text(encoding="utf-8")))


setup(cmdclass={"build_py": BuildWithCatalogues})
