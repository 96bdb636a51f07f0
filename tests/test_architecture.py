"""The layout rules of docs/architecture.md, read from the code: which package may import which (every import, also
the lazy ones inside functions), no private names imported across modules, and no module past the length limit."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from musecl.config import repo_root

PACKAGE = repo_root(Path(__file__).parent) / "musecl"

# Layers, lowest first: a unit may import units of its own layer or below, never above (docs/architecture.md).
LAYERS: list[set[str]] = [
    {"contract", "config", "storage", "__init__"},  # names, params, atomic files
    {"data", "synthetic", "opendata", "embeddings", "plots", "oracle"},  # the city bundle: read, made, checked
    {"mobility", "pairs", "encoders", "text", "fusion", "evaluation", "imagetext"},  # algorithms on bundles and tables
    {"methods"},  # one shape for representation methods
    {"stages", "prepare", "notebooks", "readme"},  # stage glue that notebooks call; the README's generated summary
]
# Imports inside one layer that are allowed (everything else in a layer stays independent).
SAME_LAYER = {("pairs", "mobility"), ("pairs", "encoders"), ("imagetext", "encoders"), ("opendata", "data"), ("synthetic", "data"),
              ("embeddings", "data"), ("plots", "data"), ("data", "storage"), ("data", "contract")}
# Algorithms the evaluation must never reach: it scores embedding tables, whoever made them.
EVALUATION_MUST_NOT_IMPORT = {"encoders", "pairs", "fusion", "text", "mobility", "methods", "stages"}
MAX_LINES = 450
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"musecl.{unit} is in no layer of tests/test_architecture.py (add it, and to the docs)")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every musecl import in the file, relative ones resolved."""
    found = []
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("musecl")]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([target] if target else []))
            if target.startswith("musecl"):
                names = [a.name for a in node.names]
                if target == "musecl":  # `from musecl import pairs` imports the unit `pairs`
                    found += [("musecl" if n.startswith("__") else f"musecl.{n}", [], node.lineno) for n in names]
                else:
                    found.append((target, names, node.lineno))
    return found


def test_every_unit_is_in_a_layer():
    for module in _modules():
        _layer(_unit(module))


def test_imports_point_down_the_layers():
    wrong = []
    for module, path in _modules().items():
        src = _unit(module)
        for target, _, line in _imports(path, module):
            dst = _unit(target)
            if dst == src:
                continue
            if _layer(dst) > _layer(src) or (_layer(dst) == _layer(src) and (src, dst) not in SAME_LAYER):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} musecl.{src} imports {target}")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_evaluation_reads_tables_only():
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
             for module, path in _modules().items() if _unit(module) == "evaluation"
             for target, _, line in _imports(path, module) if _unit(target) in EVALUATION_MUST_NOT_IMPORT]
    assert not wrong, "\n".join(wrong)


def test_no_private_name_is_imported_from_another_unit():
    wrong = []
    for module, path in _modules().items():
        for target, names, line in _imports(path, module):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and _unit(target) != _unit(module):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {private} from {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_modules_stay_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)} has {lines} lines (limit {MAX_LINES}): split it"


def test_the_layer_rules_catch_an_upward_import(tmp_path):
    """The checker itself: an algorithm that imports the stage layer is reported."""
    bad = tmp_path / "musecl" / "pairs"
    bad.mkdir(parents=True)
    (bad / "x.py").write_text("def f():\n    from musecl.stages import baselines\n")
    [(target, _, line)] = _imports(bad / "x.py", "musecl.pairs.x")
    assert (target, line) == ("musecl.stages", 2)
    assert _layer(_unit(target)) > _layer(_unit("musecl.pairs.x"))


def module_tree(width: int = 92) -> str:
    """One line per module of musecl/: its path and its docstring's first sentence (docs/architecture.md lists it)."""
    lines = []
    for path in sorted(PACKAGE.rglob("*.py"), key=lambda p: (p.parent.as_posix(), p.name != "__init__.py", p.name)):
        doc = " ".join((ast.get_docstring(ast.parse(path.read_text())) or "").split())
        for match in re.finditer(r"\. (?=[A-Z`(*])", doc):
            if not re.search(r"(\beqs?|e\.g|i\.e|vs|cf|\bet al)$", doc[: match.start()]):
                doc = doc[: match.start()] + "."
                break
        if len(doc) > width:
            doc = doc[: width - 4].rsplit(" ", 1)[0] + " ..."
        lines.append(f"{path.relative_to(PACKAGE.parent).as_posix():<42}{doc}")
    return "\n".join(lines)


def test_every_module_has_a_docstring():
    missing = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, f"modules without a docstring saying their role: {missing}"


def test_the_architecture_page_lists_every_module():
    text = ARCHITECTURE.read_text()
    assert module_tree() in text, ("docs/architecture.md's module list is out of date; print the current one with "
                                   "`python tests/test_architecture.py` and paste it there")


if __name__ == "__main__":
    print(module_tree())
