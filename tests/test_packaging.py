"""The distribution ships every package of the source tree under migr_rt.*."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"migr_rt": "migr_rt", "export": "migr_rt.export", "kernels": "migr_rt.kernels", "training": "migr_rt.training"}


def declared_packages() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)\]", text, flags=re.S | re.M)
    assert block, "pyproject.toml lists no packages"
    return set(re.findall(r'"([\w.]+)"', block.group(1)))


def source_packages() -> set[str]:
    found = set()
    for folder, prefix in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((prefix, *rel)))
    return found


def test_every_source_package_is_declared():
    assert source_packages() - declared_packages() == set(), "add these to [tool.setuptools] packages"


def test_no_declared_package_is_missing_from_the_tree():
    assert declared_packages() - source_packages() == set()


def test_no_generic_top_level_names_are_installed():
    assert all(name.startswith("migr_rt") for name in declared_packages())
