"""The package's curated public names all import, and the package stays pure."""

from __future__ import annotations

import importlib
import subprocess
import sys

import explainers


def test_every_public_name_imports() -> None:
    assert explainers.__all__ == sorted(explainers.__all__)
    assert len(set(explainers.__all__)) == len(explainers.__all__)
    for name in explainers.__all__:
        assert getattr(importlib.import_module("explainers"), name) is not None, name


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from explainers import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == explainers.__all__


def test_importing_explainers_pulls_in_no_service_storage_or_web_module() -> None:
    code = ("import sys, explainers; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "{'service', 'storage', 'fastapi', 'starlette', 'redis', 'boto3', 'httpx'}]; "
            "print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=".")
    assert result.stdout.strip() == "[]"
