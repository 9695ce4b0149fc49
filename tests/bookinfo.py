"""What the tests need to know about the book, read from ``_config.yml`` and ``_toc.yml``.

Shared by ``tests/test_book.py`` (source checks) and ``tests/browser/`` (built-page checks), so
the Colab address of a notebook and the list of pages are derived in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
COLAB = "https://colab.research.google.com"


def colab_url(repository_url: str, branch: str, path_to_book: str, notebook: str) -> str:
    """Colab address of ``notebook`` (a path relative to the book's root) in a GitHub repository.

    Mirrors how sphinx-book-theme builds its Colab launch button: the book path is stripped of
    slashes and left out entirely when empty, so no double slash appears.
    """
    parsed = urlparse(repository_url.strip())
    parts = [p for p in parsed.path.split("/") if p]
    if parsed.scheme != "https" or parsed.netloc != "github.com" or len(parts) != 2:
        raise ValueError(
            f"repository.url must look like https://github.com/<owner>/<repo>, "
            f"not {repository_url!r}"
        )
    owner, repo = parts[0], parts[1].removesuffix(".git")
    if not branch.strip():
        raise ValueError("repository.branch must not be empty")
    segments = [s for s in (path_to_book.strip("/"), notebook.strip("/")) if s]
    return f"{COLAB}/github/{owner}/{repo}/blob/{branch.strip()}/{'/'.join(segments)}"


def toc_files(node: Any) -> Iterator[str]:
    """Every ``file:`` entry of a jb-book/jb-article table of contents, in order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root") and isinstance(value, str):
                yield value
            else:
                yield from toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from toc_files(item)


def read_yaml(name: str) -> dict[str, Any]:
    """A YAML file at the repository root (``_config.yml``, ``_toc.yml``)."""
    with (ROOT / name).open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


def toc_pages() -> list[str]:
    """The book's pages in reading order, as toc entries (``book/intro``, ``notebooks/x``)."""
    return list(toc_files(read_yaml("_toc.yml")))


def notebook_colab_url(notebook: str) -> str:
    """Where the badge and launch button of ``notebook`` (``notebooks/x.ipynb``) must lead."""
    repo = read_yaml("_config.yml")["repository"]
    return colab_url(
        str(repo["url"]), str(repo["branch"]), str(repo.get("path_to_book") or ""), notebook
    )
