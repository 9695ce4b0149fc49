"""Every ``python -m stylelib`` command the README, the book pages and the chapters' prose cite
exists, with every option it uses: a reader who copies one never meets "invalid choice"."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from stylelib.cli import main, parser

ROOT = Path(__file__).resolve().parent.parent


def _prose() -> dict[str, str]:
    """README, the book's pages and each notebook's markdown cells, by file name."""
    texts = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    texts.update({p.name: p.read_text(encoding="utf-8") for p in sorted(ROOT.glob("book/*.md"))})
    for notebook in sorted(ROOT.glob("notebooks/*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        texts[notebook.name] = "\n".join("".join(c["source"]) for c in cells
                                         if c["cell_type"] == "markdown")
    return texts


def cited_commands() -> list[tuple[str, list[str]]]:
    """``(file, arguments after "python -m stylelib")`` for every command cited in inline code
    (which may wrap across lines) or on a line of a code block (a line ending in a backslash
    goes on on the next, as in a shell), shell comments dropped."""
    found = []
    for name, text in _prose().items():
        spans = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        lines = [line for block in spans for line in block.replace("\\\n", " ").splitlines()]
        inline = re.findall(r"(?<!`)`([^`]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))
        for snippet in (*lines, *inline):
            command = " ".join(snippet.split()).split(" # ")[0]
            if "python -m stylelib" in command:
                found.append((name, shlex.split(command.split("python -m stylelib", 1)[1])))
    return found


COMMANDS = cited_commands()


def test_the_docs_cite_each_kind_of_command() -> None:
    kinds = {tuple(argv[:2]) if argv[:1] == ["train"] else tuple(argv[:1]) for _, argv in COMMANDS}
    assert kinds >= {("stylize",), ("bench",), ("compare",), ("train", "fast"),
                     ("train", "adain"), ("train", "prior")}


@pytest.mark.parametrize(("where", "argv"), COMMANDS,
                         ids=[f"{w}: {' '.join(a)}" for w, a in COMMANDS])
def test_each_cited_command_exists_with_its_options(
        where: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    command = argv[:2] if argv[:1] == ["train"] else argv[:1]
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0, f"{where}: python -m stylelib {' '.join(command)}"
    shown = capsys.readouterr().out
    for option in (a.split("=")[0] for a in argv if a.startswith("--")):
        assert option in shown, f"{where}: {option} is not an option of {' '.join(command)}"
    if command and command[0] in ("stylize", "bench", "compare") and "--help" not in argv:
        parser().parse_args(argv)  # values of the right type, required arguments there
