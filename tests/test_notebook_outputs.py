"""What the committed notebooks show a learner, read from their stored outputs (nothing runs):
markdown that renders as written. (``pytest --nbval`` checks that the outputs are current.)"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from hdb_elt.settings import NOTEBOOKS_DIR


def committed_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.rglob("*.ipynb"))


def unescaped_dollars(markdown: str) -> list[str]:
    """The lines of ``markdown`` with a ``$`` outside code that no backslash escapes: JupyterLab
    reads the text between two of them as maths ("was S550,000.ThemonthlymedianmovedfromS")."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [line for line in text.splitlines() if re.search(r"(?<!\\)\$", line)]


def test_the_dollar_check_finds_a_dollar_that_would_be_maths() -> None:
    assert unescaped_dollars("was S$ 550,000, then S$ 535,000") != []
    assert unescaped_dollars("was S\\$ 550,000, in `$PWD` and\n```\necho $HOME\n```") == []


@pytest.mark.parametrize(
    "path", committed_notebooks(), ids=lambda p: p.relative_to(NOTEBOOKS_DIR).as_posix()
)
def test_no_markdown_in_a_committed_notebook_has_an_unescaped_dollar(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    found = []
    for index, cell in enumerate(notebook.cells):
        texts = [cell.source] if cell.cell_type == "markdown" else []
        for output in cell.get("outputs", []):
            markdown = output.get("data", {}).get("text/markdown")
            if markdown:
                texts.append(markdown if isinstance(markdown, str) else "".join(markdown))
        found += [f"cell {index}: {line}" for text in texts for line in unescaped_dollars(text)]
    assert not found, "\n".join(found)
