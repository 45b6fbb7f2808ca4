"""The layout of the house: families import neither the data sets, the reports, the studies nor
each other (except their engine), and importing a family loads only what it needs."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bottlenecks"
# family -> the project packages it may import (besides the leaf modules validation, checkpoint,
# progress, threads)
ALLOWED = {"cluster": set(), "kv": {"cluster"}, "codebook": {"cluster"}, "concepts": {"cluster", "encoders"},
           "info": {"cluster"}, "graph": {"cluster"}, "continual": {"kv", "codebook", "info", "cluster"},
           "encoders": {"data"}, "data": set(), "report": set()}
LEAVES = {"validation", "checkpoint", "progress", "threads"}


def _project_imports(path: Path, package: str) -> set[str]:
    """The top-level project packages a module imports (relative or absolute, at any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("bottlenecks."):
                found.add(node.module.split(".")[1])
            elif node.level == 1 and path.parent.name != "bottlenecks":
                continue  # inside the same package
            elif node.level == 2 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 2:  # from .. import x: x a module of the project (not e.g. __version__)
                found.update(a.name for a in node.names if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("bottlenecks."))
    return found - {package}


@pytest.mark.parametrize("family", sorted(ALLOWED))
def test_families_import_only_what_the_layout_allows(family):
    assert (SRC / family).is_dir(), f"the layout names a family {family!r} with no package src/bottlenecks/{family}/"
    for path in sorted((SRC / family).rglob("*.py")):
        extra = _project_imports(path, family) - ALLOWED[family] - LEAVES
        assert not extra, f"{path.relative_to(SRC)} imports {sorted(extra)}; {family} may import " \
                          f"{sorted(ALLOWED[family] | LEAVES)}"


def _loaded_after(statement: str, **env) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC.parent), "PATH": "", **env}).stdout
    return set(out.split())


def _unwanted(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m.split(".")[0] in ("sklearn", "scipy", "numba")
                  or m.startswith(("bottlenecks.data", "bottlenecks.report", "bottlenecks.studies")))


@pytest.mark.parametrize("statement", ["import bottlenecks.kv", "from bottlenecks import DiscreteKeyValueBottleneck",
                                       "import bottlenecks.cluster"])
def test_the_key_value_family_loads_no_sklearn_scipy_or_data_sets(statement):
    # numba (which imports SciPy) is loaded by the engine's first compiled call, not by an import
    loaded = _loaded_after(statement)
    assert not _unwanted(loaded), f"{statement} loaded {_unwanted(loaded)[:8]}"
    assert "bottlenecks.kv" in loaded or "kv" not in statement


def test_family_inits_export_no_study():
    import bottlenecks
    from bottlenecks import codebook, concepts, continual, info, kv

    for family in (codebook, concepts, continual, info, kv):
        studies = [n for n in family.__all__ if getattr(getattr(family, n), "__module__", "").startswith(
            "bottlenecks.studies")]
        assert not studies, f"{family.__name__} re-exports {studies}"
    # the old top-level names still work, imported on first use
    assert bottlenecks.ContinualConfig.__module__ == "bottlenecks.studies.continual"
    assert bottlenecks.KMeans.__name__ == "KMeans" and "KMeans" in dir(bottlenecks)
    with pytest.raises(AttributeError, match="no_such_name"):
        bottlenecks.no_such_name  # noqa: B018


def test_the_information_plane_and_the_ib_metrics_do_not_import_each_other():
    def relative(path):
        tree = ast.parse((SRC / path).read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}

    assert "plane" not in relative("info/metrics.py")
    assert "binning" in relative("info/metrics.py") and {"binning", "metrics"} <= relative("info/plane.py")


def test_the_import_check_sees_forbidden_imports(tmp_path):
    bad = tmp_path / "kv" / "mod.py"
    bad.parent.mkdir()
    bad.write_text("from ..data import load_digits_images\nfrom ..report.plots import x\n"
                   "import bottlenecks.studies.continual\nfrom .bottleneck import y\n")
    assert _project_imports(bad, "kv") == {"data", "report", "studies"}
