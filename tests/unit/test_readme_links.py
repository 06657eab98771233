"""The README and the changelog are read on GitHub, outside the documentation site that
``mkdocs build --strict`` checks: every relative link in them names a file of the repository, and
the README links every page of the site."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


@pytest.mark.parametrize("name", ["README.md", "CHANGELOG.md"])
def test_every_relative_link_names_a_file(name: str) -> None:
    for target in relative_links((ROOT / name).read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        assert path, f"{name}: {target} (an anchor of its own: GitHub's and mkdocs' slugs differ)"
        assert (ROOT / path).exists(), f"{name} links {target}, which does not exist"


def test_the_readme_links_every_page_of_the_site() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = [next(iter(entry.values())) for entry in config["nav"]]
    linked = {target.split("#", 1)[0] for target in relative_links((ROOT / "README.md").read_text())}
    missing = [page for page in pages if page != "index.md" and f"docs/{page}" not in linked]
    assert missing == []
