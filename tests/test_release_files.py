"""The standard files agree with the package: one version (``fasa_fast.__version__``, which
setup.py reads), the licence the package metadata declares, and one citation of the paper."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import fasa_fast

REPO = Path(__file__).resolve().parents[1]


def load_setup():
    spec = importlib.util.spec_from_file_location("fasa_fast_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() itself runs only as __main__
    return module


def test_setup_reads_the_version_from_the_package():
    assert load_setup().package_version() == fasa_fast.__version__


def test_changelog_has_the_current_version_or_an_unreleased_section():
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings, "CHANGELOG.md: no '## [version]' headings"
    assert headings[0] == "Unreleased" or headings[0] == fasa_fast.__version__, headings
    assert fasa_fast.__version__ in headings, (
        f"CHANGELOG.md has no section for {fasa_fast.__version__}: {headings}"
    )


def test_licence_file_and_metadata_agree():
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert 'license="Apache-2.0"' in (REPO / "setup.py").read_text()
    assert "license: Apache-2.0" in (REPO / "CITATION.cff").read_text()


def test_readme_bibtex_and_citation_file_name_the_same_paper():
    readme = (REPO / "README.md").read_text()
    cff = (REPO / "CITATION.cff").read_text()
    bib_title = re.search(r"title\s*=\s*\{\{FASA\}(.*?)\}", readme).group(1)
    cff_title = re.search(r'preferred-citation:\n  type: conference-paper\n  title: "(.*?)"', cff)
    assert cff_title, "CITATION.cff: preferred-citation with a title expected"
    assert "FASA" + bib_title == cff_title.group(1)
    for family in ("Zang", "Huang", "Loy"):
        assert family in cff and family in readme
