"""The meta: kinds parity between app and workers, docs cover every setting and kind, the API
declares its error envelope, and `app` stays free of `workers` and GPU packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import get_args

from app.config import Settings
from app.kinds import KINDS
from app.main import create_app
from workers.methods import METHODS

ROOT = Path(__file__).resolve().parent.parent


def test_filter_names_parity() -> None:
    from app.kinds import FilterName
    from workers.curation.filters import FILTERS

    assert set(get_args(FilterName)) == set(FILTERS)


def test_kinds_parity() -> None:
    assert set(KINDS) == set(METHODS)
    for module in METHODS.values():
        assert callable(module.run) and module.__doc__


def test_readme_documents_settings_and_kinds() -> None:
    readme = (ROOT / "README.md").read_text()
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_table.py")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert table in readme, "README's configuration table is stale: run scripts/settings_table.py"
    for kind, params in KINDS.items():
        assert f"`{kind}`" in readme
        for name in params.model_fields:
            assert f"`{name}`" in readme, f"README does not document {kind} param {name}"


def test_openapi_declares_error_envelope() -> None:
    spec = create_app(Settings()).openapi()
    assert "ErrorResponse" in spec["components"]["schemas"]
    for path, methods in spec["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, operation in methods.items():
            assert "422" in operation["responses"], (method, path)
            assert "404" in operation["responses"], (method, path)


def test_app_does_not_import_workers_or_gpu_packages() -> None:
    forbidden = ("workers", "vllm", "torch", "transformers")
    for path in (ROOT / "app").rglob("*.py"):
        if path.name == "cli.py":  # the composition root
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path} imports {name}"


def test_methods_and_curation_stay_pure() -> None:
    for folder in ("methods", "curation"):
        for path in (ROOT / "workers" / folder).rglob("*.py"):
            text = path.read_text()
            assert "sqlalchemy" not in text and "app.db" not in text, path
