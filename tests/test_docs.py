"""The user guide's examples run: every ```python block of each docs/ page, in order,
in one namespace per page (working directory: a temporary folder)."""
import os
import re

import pytest

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")
PAGES = sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_every_page_is_listed_and_has_examples():
    index = open(os.path.join(DOCS, "README.md")).read()
    for page in PAGES:
        if page != "README.md":
            assert f"({page})" in index, f"docs/README.md does not link {page}"
            assert BLOCK.search(open(os.path.join(DOCS, page)).read()), f"{page} has no python example"


@pytest.mark.parametrize("page", PAGES)
def test_examples_on_the_page_run(page, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")  # the pages use the digits
    monkeypatch.chdir(tmp_path)
    text = open(os.path.join(DOCS, page)).read()
    namespace = {"__name__": f"docs_{page[:-3]}"}
    for i, m in enumerate(BLOCK.finditer(text)):
        line = text[:m.start()].count("\n") + 2
        code = compile("\n" * (line - 1) + m.group(1), os.path.join("docs", page), "exec")
        exec(code, namespace)  # a failure's traceback points at the page's line
