"""operators/ is pure PyTorch: it never imports ray, kafka, av, pyarrow or pipeline."""

import ast
from pathlib import Path

FORBIDDEN = {"ray", "kafka", "av", "pyarrow", "pipeline"}
OPERATORS = Path(__file__).resolve().parents[1] / "operators"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_operators_import_no_io_or_runtime_packages():
    files = sorted(OPERATORS.rglob("*.py"))
    assert files, "operators/ has no modules"
    offenders = {str(f.relative_to(OPERATORS.parent)): sorted(imported_roots(f) & FORBIDDEN) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_checker_catches_forbidden_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import av\nfrom ray.util import ActorPool\nfrom pipeline.grid import Cell\nimport torch\n")
    assert imported_roots(bad) & FORBIDDEN == {"av", "ray", "pipeline"}
