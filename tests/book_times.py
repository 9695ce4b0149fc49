"""Where a book build's time goes: run the chapters one after another, as the build does, and
print each chapter's time and its slowest cells.

Usage (from the repository root): python tests/book_times.py [--profile book] [NOTEBOOK ...]

Each notebook runs in a fresh kernel from its own folder, in the given profile, with nbclient
(the engine under jupyter-book's execution); nbclient stamps every cell with when it started and
ended. The shared result cache (``_build/.stylelib_results``) is used as in a build (it is on
once ``_build`` exists), so run it after ``rm -rf _build && mkdir _build`` to measure a first
build, and again to see what the cache saves.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def cell_seconds(cell: nbformat.NotebookNode) -> float:
    """How long one executed code cell ran, from the stamps nbclient leaves in its metadata."""
    stamps = cell.get("metadata", {}).get("execution", {})
    start, end = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def slowest(notebook: nbformat.NotebookNode, count: int = 3) -> list[tuple[float, str]]:
    """The ``count`` slowest code cells: seconds and the cell's first line."""
    timed = [(cell_seconds(cell), cell.source.strip().splitlines()[0] if cell.source.strip()
              else "(empty)") for cell in notebook.cells if cell.cell_type == "code"]
    return sorted(timed, reverse=True)[:count]


def run(path: Path) -> tuple[float, list[tuple[float, str]]]:
    """Execute one notebook; its wall time and its slowest cells."""
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(notebook, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - started, slowest(notebook)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted((ROOT / "notebooks").glob("*.ipynb")))
    parser.add_argument("--profile", default="book")
    args = parser.parse_args()
    os.environ["STYLELIB_PROFILE"] = args.profile
    print("| chapter | seconds | slowest cells (s, first line) |\n| --- | --- | --- |")
    total = 0.0
    for path in args.notebooks:
        seconds, cells = run(path)
        total += seconds
        listed = "; ".join(f"{s:.1f} s `{line[:60]}`" for s, line in cells)
        print(f"| {path.stem} | {seconds:.0f} | {listed} |", flush=True)
    print(f"| all | {total:.0f} ({total / 60:.1f} min) | |")


if __name__ == "__main__":
    main()
