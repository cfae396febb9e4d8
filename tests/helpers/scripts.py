"""The repository's Python scripts outside the package, loaded by their path: bench/'s benchmarks
and the recipe's local/ preparation. They run as ``python bench/<script>.py`` (their directory is
their import path then) and are no importable packages."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_module(path: Path) -> ModuleType:
    """Import the script ``path`` (or the package directory ``path``) under its own name, without
    putting its directory on ``sys.path``; once, as ``import`` does.

    The module is in ``sys.modules`` from then on, so ``from <name> import ...`` finds it, and so
    do its package's own imports (``from mini_corpus.phones import ...``). A script that imports a
    neighbour by name (bench_decode: ``from bench_pretrain_step import ...``) needs that neighbour
    loaded first.
    """
    name = path.stem
    if name in sys.modules:
        return sys.modules[name]
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before it runs: dataclasses and pickle look it up there
    spec.loader.exec_module(module)
    return module
