"""The package's layers (CONTRIBUTING.md): every module is placed in one, imports never run up
to a higher layer, and there is no import cycle, counting imports inside functions too."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "stylelib"
LAYERS = [
    {"errors", "files", "colour", "distributed", "profiles", "costs", "widgets",
     "result_cache"},
    {"assets", "weight_files", "images", "training", "video"},
    {"backbones", "precision", "data", "training_commands", "training_views", "upsampling",
     "tiles", "flow", "clips"},
    {"losses", "tiled_loss"},
    {"gatys", "fast", "bundled", "adain", "adain_training", "adain_original", "diffusion",
     "prior_training", "stable_diffusion", "magenta", "gan"},
    {"metrics"},
    {"benchmarks", "methods", "scaling"},
    {"comparison", "motion", "motion_study"},
    {"bench", "cli", "__init__", "__main__"},
    {"tryit", "tryit_build"},
]
"""From the bottom up, as CONTRIBUTING.md draws them."""
LEVEL = {module: k for k, layer in enumerate(LAYERS) for module in layer}


@cache
def imports(module: str) -> frozenset[str]:
    """The stylelib modules ``module`` imports anywhere in its file."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "stylelib":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stylelib."):
            found.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("stylelib.")}
    return frozenset(found & set(LEVEL))


def test_every_module_is_in_one_layer_and_in_the_map() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == set(LEVEL), "place new modules in LAYERS and CONTRIBUTING.md"
    guide = (PACKAGE.parent / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert all(f"`{m}`" in guide for m in modules - {"__init__"})


def test_no_import_runs_up_a_layer() -> None:
    upward = [(m, i) for m in LEVEL for i in imports(m) if LEVEL[i] > LEVEL[m]]
    assert upward == []


def _reaches(start: str, target: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether ``target`` can be reached from ``start`` along imports."""
    return any(i == target or (i not in seen and _reaches(i, target, seen | {i}))
               for i in imports(start))


def test_there_is_no_import_cycle() -> None:
    assert [m for m in LEVEL if _reaches(m, m)] == []
