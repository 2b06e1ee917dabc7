"""The house by concern: recordio_core's subpackages, the old documented import paths, and the
size rules (no module past ~400 lines, no function past ~60) that keep it readable."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The README's paths -> the module they are now.
DOCUMENTED = {
    "recordio_core.recordio": "recordio_core.format.recordio",
    "recordio_core.reader": "recordio_core.reading.reader",
    "recordio_core.torch_dataset": "recordio_core.reading.torch_dataset",
    "recordio_core.manifest": "recordio_core.format.manifest",
}
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize(("old", "new"), sorted(DOCUMENTED.items()))
def test_documented_paths_are_the_modules_of_their_new_homes(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_documented_names_import():
    from recordio_core import IRHeader, MXIndexedRecordIO, recordio
    from recordio_core.manifest import read_manifest
    from recordio_core.reader import ImageRecordIter, ImageRecordReader

    assert recordio.MXIndexedRecordIO is MXIndexedRecordIO and recordio.IRHeader is IRHeader
    assert callable(read_manifest) and callable(ImageRecordIter) and ImageRecordReader


def _modules() -> list[Path]:
    return sorted(p for d in ("recordio_core", "flows", "tasks") for p in (ROOT / d).rglob("*.py"))


def test_no_module_and_no_function_is_long():
    long_modules = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    long_functions = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {n}")
    assert not long_modules and not long_functions, long_modules + long_functions


def test_the_engine_is_grouped_by_concern():
    top = {p.stem for p in (ROOT / "recordio_core").glob("*.py")} - {"__init__"}
    assert top == {m.rsplit(".", 1)[1] for m in DOCUMENTED}  # only the documented old paths
    groups = {p.parent.name for p in (ROOT / "recordio_core").glob("*/__init__.py")}
    assert groups == {"format", "storage", "images", "building", "reading"}
