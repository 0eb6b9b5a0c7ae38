"""The simulator layer stays free of torch and gymnasium (DESIGN.md: sim/ is testable alone)."""

import ast
from pathlib import Path

SIM = Path(__file__).resolve().parents[2] / "hffm_env" / "sim"
FORBIDDEN = {"torch", "gymnasium", "gym"}


def test_sim_sources_import_neither_torch_nor_gymnasium():
    files = sorted(SIM.glob("*.py"))
    assert len(files) >= 9  # transfers.py among them
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & FORBIDDEN, f"{path.name} imports {roots & FORBIDDEN}"
