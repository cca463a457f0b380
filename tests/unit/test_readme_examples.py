"""The config examples in the README are valid config: each YAML block that
describes a mesh loads and validates (clusters it only names are added)."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from meshgrpc.config import loader, validate

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def mesh_blocks() -> list[str]:
    with open(README) as f:
        text = f.read()
    return [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "routes:" in b or "clusters:" in b]


@pytest.mark.parametrize("block", mesh_blocks())
def test_readme_mesh_examples_validate(block):
    doc = yaml.safe_load(block)
    named = {c["name"] for c in doc.get("clusters", [])}
    referenced = set(re.findall(r"cluster: ([\w.-]+)", block))
    doc.setdefault("clusters", []).extend({"name": n} for n in sorted(referenced - named))
    assert validate.validate_mesh(loader.parse_document(doc)) == []


def test_there_is_an_example():
    assert mesh_blocks()
