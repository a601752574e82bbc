"""A compiled build of the routing hot path: the same source, compiled with mypyc, kept out of the source tree.

The routing lab replays a request through the live router's own steps (planning, breakers, budget
reservations, accounting); interpreted, that is about 10 µs a request.  :func:`build` copies the package
to a cache folder named by a digest of its sources and compiles :data:`HOT_PATH` there with mypyc
(about a minute on two CPUs; then cached).  Put the returned folder first on ``sys.path`` (or
``PYTHONPATH``) and ``import lumina_lab`` is that build: nothing in the source tree changes, so an edited
module can never be shadowed by a stale compiled one.

>>> from lumina_lab.compiled import build   # doctest: +SKIP
>>> root = build()                          # doctest: +SKIP
>>> # PYTHONPATH=<root> python benchmarks/replay_throughput.py  -- what the benchmark does itself

Needs ``mypy`` (which carries mypyc) and a C compiler.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from .errors import ConfigError

__all__ = ["HOT_PATH", "build", "is_compiled"]

#: Modules compiled, relative to the package: the per-request path of a replay and of a live call.
HOT_PATH = (
    "clock.py",
    "providers/messages.py",
    "providers/base.py",
    "providers/stats.py",
    "providers/resilience.py",
    "providers/registry.py",
    "providers/strategies.py",
    "providers/cost.py",
    "providers/simulated.py",
    "providers/router.py",
    "sim/engine.py",
    "sim/request_factory.py",
)

# Type-check the hot path alone: every other import (pydantic, numpy, the rest of the package) is Any,
# which keeps mypyc's analysis to seconds.
_MYPY_CONFIG = """[mypy]
python_version = {version}
follow_imports = skip
ignore_missing_imports = True
"""

# mypyc (1.x/2.x) builds a text signature for every method and fails on some valid ones
# (``def f(self, x=1, **kw)``); the signature is only documentation, so an invalid one is kept unchecked.
_SETUP = """
import inspect, sys
_init = inspect.Signature.__init__
def _lenient(self, parameters=None, *args, **kwargs):
    try:
        _init(self, parameters, *args, **kwargs)
    except ValueError:
        _init(self, parameters, __validate_parameters__=False)
inspect.Signature.__init__ = _lenient
from setuptools import setup
from mypyc.build import mypycify
modules = sys.argv[1:]
setup(name="lumina_lab_compiled", ext_modules=mypycify(["--config-file", "mypy.ini", *modules], opt_level="3"),
      script_args=["build_ext", "--inplace"])
"""


def _package() -> Path:
    return Path(__file__).resolve().parent


def _digest(package: Path) -> str:
    """Digest of every module of the package, the Python version, mypy's version and the checkout's folder
    (a build answers :func:`lumina_lab.data.checkout` with the checkout it was built from)."""
    import mypy.version

    h = hashlib.sha256(f"{sys.version}|{mypy.version.__version__}|{HOT_PATH}|{package.resolve()}".encode())
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _default_root() -> Path:
    base = os.environ.get("LUMINA_COMPILED_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lumina-lab", "compiled"
    )
    return Path(base)


def build(root: str | os.PathLike[str] | None = None, *, quiet: bool = True) -> Path:
    """Compile :data:`HOT_PATH` into a copy of the package; return the folder to put on ``sys.path``.

    The copy lives in ``root`` (default ``$LUMINA_COMPILED_DIR`` or ``~/.cache/lumina-lab/compiled``)
    under a name made of the sources' digest, so a build is reused until any module changes.

    Raises:
        ConfigError: mypy (mypyc) is not installed, or the build failed (the message ends with the
            compiler's last lines; the whole log is ``build.log`` in the folder).
    """
    try:
        import mypy.version  # noqa: F401
    except ImportError:
        raise ConfigError(
            "a compiled build needs mypyc, which comes with mypy", hint="pip install mypy (and a C compiler)"
        ) from None
    package = _package()
    dest = Path(root) if root is not None else _default_root()
    out = dest / f"{sys.implementation.cache_tag}-{_digest(package)}"
    if (out / "BUILT").is_file():
        return out
    work = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(package, work / "lumina_lab", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    datasets = package.parent / "datasets"  # a checkout's shipped data (data.py looks beside the package)
    if datasets.is_dir():
        (work / "datasets").symlink_to(datasets, target_is_directory=True)
    # where the notebooks, the shipped data and ../shared are: the checkout, not this cache folder
    (work / "lumina_lab" / "_checkout.txt").write_text(str(package.parent.resolve()) + "\n")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (work / "mypy.ini").write_text(_MYPY_CONFIG.format(version=version))
    (work / "setup_compiled.py").write_text(_SETUP)
    modules = [f"lumina_lab/{m}" for m in HOT_PATH]
    log = work / "build.log"
    with log.open("w") as fh:
        proc = subprocess.run(
            [sys.executable, "setup_compiled.py", *modules],
            cwd=work,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MYPYC_OPT_LEVEL": "3"},
        )
    if proc.returncode != 0 or not is_compiled(work):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ConfigError(
            f"the compiled build failed (exit {proc.returncode}); its log is {log}\n{tail}",
            hint="pip install mypy, and a C compiler (apt-get install build-essential)",
        )
    shutil.rmtree(work / "build", ignore_errors=True)
    (work / "BUILT").write_text(" ".join(HOT_PATH) + "\n")
    if out.exists():  # another process finished the same build first
        shutil.rmtree(work, ignore_errors=True)
    else:
        work.rename(out)
    if not quiet:
        print(f"compiled build: {out}", file=sys.stderr)
    return out


def is_compiled(root: str | os.PathLike[str] | None = None) -> bool:
    """Whether every :data:`HOT_PATH` module is a compiled extension in ``root`` (a folder holding a
    ``lumina_lab`` package), or, without ``root``, in the ``lumina_lab`` imported now."""
    base = Path(root) / "lumina_lab" if root is not None else _package()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return all((base / m).with_suffix(suffix).is_file() for m in HOT_PATH)
