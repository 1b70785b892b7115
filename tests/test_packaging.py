"""The wheel and the sdist: what they contain, and what a fresh install puts where.

Builds both once with ``python -m build`` (isolated, so it also proves the build needs nothing
from this checkout's environment).
"""

from __future__ import annotations

import email
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from ospp import __version__

ROOT = Path(__file__).resolve().parent.parent
DATA_FILES = {
    "share/man/man1/ospp.1": "man/ospp.1",
    "share/man/man1/slmgr.1": "man/slmgr.1",
    "share/bash-completion/completions/ospp": "completions/bash/ospp",
    "share/zsh/site-functions/_ospp": "completions/zsh/_ospp",
    "share/fish/vendor_completions.d/ospp.fish": "completions/fish/ospp.fish",
}
# Tracked files that are about this checkout, not the project: not shipped in the sdist.
NOT_IN_SDIST = (".ci/", ".gitignore")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("build") is None, reason="the 'build' package is not installed"
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    # Build from a copy: the build writes ospp.egg-info and build/ next to its sources.
    src = tmp_path_factory.mktemp("src") / "ospp"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", "artifacts"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("ospp-*.whl")
    (sdist,) = out.glob("ospp-*.tar.gz")
    return wheel, sdist


def test_wheel_metadata_has_the_spdx_license_and_the_one_version(dists):
    wheel, _ = dists
    with zipfile.ZipFile(wheel) as zf:
        meta = email.message_from_bytes(zf.read(f"ospp-{__version__}.dist-info/METADATA"))
        names = zf.namelist()
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "MIT"
    assert f"ospp-{__version__}.dist-info/licenses/LICENSE" in names
    assert "Programming Language :: Python :: 3.11" in (meta.get_all("Classifier") or [])
    assert not [n for n in names if n.startswith("tests/")]


def test_wheel_carries_the_swedish_catalogue_compiled_at_build_time(dists):
    from ospp.cli import i18n

    wheel, _ = dists
    po = ROOT / "ospp/cli/locale/sv/LC_MESSAGES/ospp.po"
    with zipfile.ZipFile(wheel) as zf:
        shipped_po = zf.read("ospp/cli/locale/sv/LC_MESSAGES/ospp.po")
        mo = zf.read("ospp/cli/locale/sv/LC_MESSAGES/ospp.mo")
    assert shipped_po == po.read_bytes()
    assert mo == i18n.compiled(po.read_text(encoding="utf-8"))


def test_wheel_carries_the_man_page_and_completions_under_share(dists):
    wheel, _ = dists
    with zipfile.ZipFile(wheel) as zf:
        for installed, source in DATA_FILES.items():
            data = zf.read(f"ospp-{__version__}.data/data/{installed}")
            assert data == (ROOT / source).read_bytes(), installed


def test_sdist_has_every_tracked_file(dists):
    _, sdist = dists
    prefix = f"ospp-{__version__}/"
    with tarfile.open(sdist) as tf:
        names = {m.name.removeprefix(prefix) for m in tf.getmembers() if m.isfile()}
    for needed in ("LICENSE", "MANIFEST.in", "requirements-dev.lock", "tests/conftest.py"):
        assert needed in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/artifacts")]
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    missing = [
        f
        for f in tracked
        if f not in names and not f.startswith(NOT_IN_SDIST) and (ROOT / f).exists()
    ]
    assert missing == []


def test_unpacked_sdist_runs_its_own_tests(dists, tmp_path):
    """The sdist's docs tests compare its man page and completions with its own CLI."""
    _, sdist = dists
    with tarfile.open(sdist) as tf:
        tf.extractall(tmp_path, filter="data")
    unpacked = tmp_path / f"ospp-{__version__}"
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_docs.py"],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout


def test_fresh_venv_install_puts_man_page_and_completions_under_share(dists, tmp_path):
    wheel, _ = dists
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / ("Scripts" if os.name == "nt" else "bin") / "python"
    # Without PYTHONPATH: a source tree on it (an unpacked sdist) looks installed to pip.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for installed, source in DATA_FILES.items():
        assert (target / installed).read_bytes() == (ROOT / source).read_bytes(), installed
    # the installed Swedish catalogue is used as built: its .mo records the installed .po's sum
    import gettext

    from ospp.cli import i18n

    po = next(target.rglob("site-packages/ospp/cli/locale/sv/LC_MESSAGES/ospp.po"))
    with po.with_suffix(".mo").open("rb") as fh:
        built = gettext.GNUTranslations(fh)
    assert built.info()["x-source-crc32"] == i18n.source_sum(po.read_text(encoding="utf-8"))
    assert built.gettext("Licensed product") == "Licensierad produkt"
    if shutil.which("man") is None:
        pytest.skip("man is not installed: checked the file path only")
    for page in ("ospp", "slmgr"):
        found = subprocess.run(
            ["man", "-w", page],
            env={**os.environ, "MANPATH": str(target / "share" / "man")},
            capture_output=True,
            text=True,
        )
        assert found.stdout.strip() == str(target / "share" / "man" / "man1" / f"{page}.1")
