"""Structural checks of the book: configuration, table of contents, notebooks, citations.

These tests read files only (no notebook is executed), so they run in well under a second.
The repository URL, branch and book path are read from ``_config.yml`` and every notebook
badge and install line is compared against them, so the repository is named in one place.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookinfo import COLAB, colab_url, toc_files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
BIB_FILE = BOOK_DIR / "references.bib"
SOURCE_SUFFIXES = (".md", ".ipynb")

# {cite}`a,b`, {cite:p}`a`, {cite:t}`a`, {cite:ps}`a` ... (sphinxcontrib-bibtex roles)
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
# {term}`Gram matrix` or {term}`text <Gram matrix>`
TERM_ROLE = re.compile(r"\{term\}`([^`]*)`")
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^\s)\"'<>\]]+")
GIT_URL = re.compile(r"git\+([^\s\"'\]]+)")


# --------------------------------------------------------------------------- helpers


def strip_git_ref(url: str) -> str:
    """``https://host/o/r.git@main#egg=x`` -> ``https://host/o/r`` (pip VCS URL to repository)."""
    url = url.split("#", 1)[0]
    scheme, sep, rest = url.partition("://")
    rest = rest.split("@", 1)[0]  # a pip ref suffix; the URLs used here carry no credentials
    return f"{scheme}{sep}{rest}".rstrip("/").removesuffix(".git")


def cell_source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def load_notebook(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        notebook: dict[str, Any] = json.load(f)
    return notebook


def resolve(entry: str) -> list[Path]:
    """The source files a toc entry (no extension) can refer to."""
    return [p for p in (ROOT / f"{entry}{s}" for s in SOURCE_SUFFIXES) if p.is_file()]


def book_sources() -> list[Path]:
    """Markdown pages and notebooks that make up the book (book/ and notebooks/)."""
    found: list[Path] = []
    for folder in (BOOK_DIR, NOTEBOOKS_DIR):
        for suffix in SOURCE_SUFFIXES:
            found.extend(
                p for p in folder.rglob(f"*{suffix}") if ".ipynb_checkpoints" not in p.parts
            )
    return sorted(found)


def prose_of(path: Path) -> str:
    """Text in which MyST roles can appear: a whole .md file, or a notebook's markdown cells."""
    if path.suffix == ".ipynb":
        cells = load_notebook(path).get("cells", [])
        return "\n".join(cell_source(c) for c in cells if c.get("cell_type") == "markdown")
    return path.read_text(encoding="utf-8")


def bib_keys() -> set[str]:
    text = BIB_FILE.read_text(encoding="utf-8")
    entries = re.findall(r"@(\w+)\s*[{(]\s*([^,\s]+)\s*,", text)
    return {key for kind, key in entries if kind.lower() not in ("comment", "string", "preamble")}


def glossary_terms() -> set[str]:
    text = (BOOK_DIR / "glossary.md").read_text(encoding="utf-8")
    body = re.search(r"```\{glossary\}\n(.*?)\n```", text, re.S)
    assert body, "book/glossary.md has no {glossary} directive"
    terms = set()
    for line in body.group(1).splitlines():
        if line.strip() and not line.startswith((" ", "\t", ":")):
            terms.add(line.strip().lower())
    return terms


NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    with (ROOT / "_config.yml").open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


@pytest.fixture(scope="module")
def toc() -> dict[str, Any]:
    with (ROOT / "_toc.yml").open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


@pytest.fixture(scope="module")
def repository(config: dict[str, Any]) -> dict[str, str]:
    repo = config["repository"]
    return {
        "url": str(repo["url"]),
        "branch": str(repo["branch"]),
        "path_to_book": str(repo.get("path_to_book") or ""),
    }


# --------------------------------------------------------------------------- the helpers themselves


@pytest.mark.parametrize(
    ("url", "branch", "path_to_book", "notebook", "expected"),
    [
        (
            "https://github.com/nst-course/style-transfer-book",
            "main",
            "",
            "notebooks/03_gatys.ipynb",
            "https://colab.research.google.com/github/nst-course/style-transfer-book"
            "/blob/main/notebooks/03_gatys.ipynb",
        ),
        (
            "https://github.com/someone/some-repo.git/",
            "dev",
            "/docs/book/",
            "notebooks/05_adain.ipynb",
            "https://colab.research.google.com/github/someone/some-repo"
            "/blob/dev/docs/book/notebooks/05_adain.ipynb",
        ),
    ],
)
def test_colab_url_derivation(
    url: str, branch: str, path_to_book: str, notebook: str, expected: str
) -> None:
    derived = colab_url(url, branch, path_to_book, notebook)
    assert derived == expected
    assert "//" not in derived.removeprefix("https://")


@pytest.mark.parametrize(
    "url", ["https://gitlab.com/a/b", "http://github.com/a/b", "https://github.com/onlyowner"]
)
def test_colab_url_rejects_non_github(url: str) -> None:
    with pytest.raises(ValueError, match=r"repository\.url"):
        colab_url(url, "main", "", "notebooks/x.ipynb")


def test_strip_git_ref() -> None:
    base = "https://github.com/nst-course/style-transfer-book"
    assert strip_git_ref(base) == base
    assert strip_git_ref(f"{base}.git@main#egg=stylelib") == base
    assert strip_git_ref(f"{base}@v0.1.0") == base


def test_cite_and_term_patterns() -> None:
    text = "see {cite:p}`a2015,b2016` and {cite}`c` and {cite:t}`d`; {term}`maps <Feature map>`"
    keys = [k.strip() for m in CITE_ROLE.findall(text) for k in m.split(",")]
    assert keys == ["a2015", "b2016", "c", "d"]
    assert TERM_ROLE.findall(text) == ["maps <Feature map>"]


# --------------------------------------------------------------------------- configuration


def test_config_repository_and_launch_buttons(
    config: dict[str, Any], repository: dict[str, str]
) -> None:
    # Derivation must succeed for the configured repository (GitHub, non-empty branch).
    colab_url(repository["url"], repository["branch"], repository["path_to_book"], "x.ipynb")
    assert config["launch_buttons"]["colab_url"].rstrip("/") == COLAB
    assert config["only_build_toc_files"] is True
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["execute"]["allow_errors"] is False
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert "book/references.bib" in config["bibtex_bibfiles"]


def test_static_html_wins_over_widget_view_in_html(config: dict[str, Any]) -> None:
    """The sliders' text/html (static frames) must outrank the widget view for HTML pages."""
    render = pytest.importorskip("myst_nb.core.render")
    overrides = [tuple(o) for o in config["sphinx"]["config"]["nb_mime_priority_overrides"]]
    for builder in ("html", "dirhtml", "singlehtml"):
        order = render.get_mime_priority(builder, overrides)
        widget = "application/vnd.jupyter.widget-view+json"
        if widget in order:
            assert order.index("text/html") < order.index(widget), builder


# --------------------------------------------------------------------------- table of contents


def test_toc_entries_resolve_to_one_source_file(toc: dict[str, Any]) -> None:
    entries = list(toc_files(toc))
    assert entries, "_toc.yml lists no files"
    assert len(entries) == len(set(entries)), "a file is listed twice in _toc.yml"
    for entry in entries:
        assert Path(entry).suffix == "", f"toc entry {entry!r} must not carry an extension"
        found = resolve(entry)
        assert found, f"toc entry {entry!r} matches no {' or '.join(SOURCE_SUFFIXES)} file"
        # A chapter moving from a markdown placeholder to a notebook must drop the placeholder:
        # Sphinx cannot build two sources with the same name.
        assert len(found) == 1, f"toc entry {entry!r} matches several files: {found}"


def test_every_chapter_file_is_in_the_toc(toc: dict[str, Any]) -> None:
    listed = set(toc_files(toc))
    for path in book_sources():
        if path.parent == BOOK_DIR or path.parent == NOTEBOOKS_DIR:
            entry = path.relative_to(ROOT).with_suffix("").as_posix()
            assert entry in listed, f"{entry} is not in _toc.yml, so it would never be built"


# --------------------------------------------------------------------------- notebooks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_starts_with_title_and_colab_badge(path: Path, repository: dict[str, str]) -> None:
    cells = load_notebook(path)["cells"]
    assert cells and cells[0]["cell_type"] == "markdown", "first cell must be markdown"
    first = cell_source(cells[0])
    assert re.search(r"^# \S", first, re.M), "first cell must contain a '# ' title"
    expected = colab_url(
        repository["url"],
        repository["branch"],
        repository["path_to_book"],
        f"notebooks/{path.name}",
    )
    links = COLAB_LINK.findall(first)
    assert links, "first cell must contain an Open-in-Colab badge link"
    assert "colab-badge.svg" in first, "the Colab link should be the standard badge image"
    for link in links:
        assert link == expected, f"Colab link {link} should be {expected}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_setup_cell(path: Path, repository: dict[str, str]) -> None:
    cells = load_notebook(path)["cells"]
    assert len(cells) > 1 and cells[1]["cell_type"] == "code", "second cell must be code"
    assert "hide-input" in cells[1].get("metadata", {}).get("tags", []), (
        "setup cell must be tagged hide-input"
    )
    source = cell_source(cells[1])
    install_lines = [line for line in source.splitlines() if "pip install" in line]
    assert install_lines, "setup cell must pip-install stylelib (for Colab)"
    urls = [strip_git_ref(u) for line in install_lines for u in GIT_URL.findall(line)]
    assert urls, "the pip install line must install from git+<repository.url>"
    for url in urls:
        assert url == repository["url"].rstrip("/"), f"installs from {url}, not repository.url"
    assert "stylelib.setup(" in source, "setup cell must call stylelib.setup(...)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_no_committed_outputs(path: Path) -> None:
    for index, cell in enumerate(load_notebook(path)["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"cell {index} has committed outputs"
            assert cell.get("execution_count") is None, f"cell {index} has an execution count"


# --------------------------------------------------------------------------- citations and terms


def test_bibliography_parses_and_has_no_duplicate_keys() -> None:
    text = BIB_FILE.read_text(encoding="utf-8")
    keys = re.findall(r"@\w+\s*[{(]\s*([^,\s]+)\s*,", text)
    assert keys, "references.bib has no entries"
    assert len(keys) == len(set(keys)), "duplicate keys in references.bib"


def test_every_citation_is_in_the_bibliography() -> None:
    known = bib_keys()
    missing: dict[str, list[str]] = {}
    for path in book_sources():
        for match in CITE_ROLE.findall(prose_of(path)):
            for key in (k.strip() for k in match.split(",")):
                if key and key not in known:
                    missing.setdefault(path.relative_to(ROOT).as_posix(), []).append(key)
    assert not missing, f"citation keys missing from {BIB_FILE.name}: {missing}"


def test_every_term_is_in_the_glossary() -> None:
    known = glossary_terms()
    missing: dict[str, list[str]] = {}
    for path in book_sources():
        for match in TERM_ROLE.findall(prose_of(path)):
            target = re.search(r"<([^>]+)>\s*$", match)
            term = (target.group(1) if target else match).strip().lower()
            if term not in known:
                missing.setdefault(path.relative_to(ROOT).as_posix(), []).append(term)
    assert not missing, f"terms missing from book/glossary.md: {missing}"
