"""The lessons (app/lessons.py): one per page of the navigation, complete, with LaTeX that
Streamlit's own KaTeX renders and dlgm names that exist; drawn at the top of every page, open on
the first visit of a page and collapsed on later ones.

LaTeX is checked twice: here by Streamlit's own KaTeX bundle run under Node (``throwOnError``
and ``strict="error"``: an unknown macro, an unbalanced group or a non-ASCII character in maths
fails), skipped where Node or the bundle is missing, and always by a structural check
(non-empty, balanced braces, \\left/\\right and \\begin/\\end pairs, no ``$``). The browser test
(tests/test_browser.py) checks that every lesson shows KaTeX in the real app.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import streamlit
from conftest import APP, open_page

from app.lessons import LESSONS, PAPER_URL, opens_expanded, paper_line

ROOT = APP.parent
KATEX = sorted((Path(streamlit.__file__).parent / "static" / "static" / "js").glob("katex.*.js"))
NODE = shutil.which("node")
RENDER_JS = """
import { readFileSync } from "node:fs";
const katex = (await import(process.argv.at(-1))).default;
const items = JSON.parse(readFileSync(0, "utf8"));
const errors = items.map(([tex, display]) => {
  try {
    katex.renderToString(tex, { displayMode: display, throwOnError: true, strict: "error" });
    return null;
  } catch (e) {
    return String(e.message);
  }
});
process.stdout.write(JSON.stringify(errors));
"""


def nav_pages() -> list[str]:
    """The page keys of streamlit_app.py's navigation, in order ('app/pages/<key>.py')."""
    found = []
    for node in ast.walk(ast.parse(APP.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Page":
            path = node.args[0].value
            assert path.startswith("app/pages/") and path.endswith(".py"), path
            found.append(path.removeprefix("app/pages/").removesuffix(".py"))
    return found


def all_tex() -> list[tuple[str, bool]]:
    """Every LaTeX string of the lessons: (tex, display mode)."""
    items = [(eq.tex, True) for lesson in LESSONS.values() for eq in lesson.equations]
    return items + [(tex, False) for lesson in LESSONS.values() for tex, _ in lesson.symbols]


def structure_errors(tex: str) -> list[str]:
    """What is structurally wrong with a LaTeX string (empty list: nothing found)."""
    errors = []
    if not tex.strip():
        errors.append("empty")
    if "$" in tex:
        errors.append("contains $ (st.latex adds the delimiters)")
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):  # \{ and \} are literal braces
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            errors.append("a } closes nothing")
            break
    if depth > 0:
        errors.append(f"{depth} unclosed {{")
    if len(re.findall(r"\\left\b", tex)) != len(re.findall(r"\\right\b", tex)):
        errors.append("\\left and \\right do not pair")
    if re.findall(r"\\begin\{(\w+)\}", tex) != re.findall(r"\\end\{(\w+)\}", tex)[::-1]:
        errors.append("\\begin and \\end do not pair")
    return errors


def katex_errors(items: list[tuple[str, bool]], tmp: Path) -> list[str | None]:
    """KaTeX's error message for each (tex, display) item, None where it renders."""
    if not (NODE and len(KATEX) == 1):
        pytest.skip("needs node and streamlit's bundled KaTeX (static/js/katex.*.js)")
    module = tmp / "katex.mjs"  # an ES module: Node 20 needs the .mjs suffix to see it as one
    shutil.copyfile(KATEX[0], module)
    out = subprocess.run(
        [NODE, "--input-type=module", "-e", RENDER_JS, "--", module.as_uri()],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def resolve(name: str):
    """The object a dotted name points to: the longest importable module, then attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


# ---------------------------------------------------------------------------- content
def test_every_page_in_the_navigation_has_a_lesson():
    pages = nav_pages()
    assert len(pages) == len(set(pages)) == 7
    assert set(pages) == set(LESSONS)


def test_the_navigation_keeps_models_first_and_default():
    assert nav_pages()[0] == "models"
    assert "default=True" in APP.read_text().split('"app/pages/models.py"')[1].split(")")[0]


@pytest.mark.parametrize("page", sorted(LESSONS))
def test_every_page_script_draws_its_own_lesson_once(page):
    calls = [
        node
        for node in ast.walk(ast.parse((ROOT / "app" / "pages" / f"{page}.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lesson_ui"
    ]
    assert [c.args[0].value for c in calls] == [page]


@pytest.mark.parametrize("page", sorted(LESSONS))
def test_a_lesson_is_complete(page):
    lesson = LESSONS[page]
    assert lesson.title and lesson.section and lesson.try_this
    assert 1 <= len(lesson.equations) <= 4, "a short lesson"
    sentences = len(re.findall(r"[.?!](?=\s+[A-Z]|\s*$)", lesson.look_for))  # not "Fig. 5"
    assert 2 <= sentences <= 3, (sentences, lesson.look_for)
    for eq in lesson.equations:
        assert eq.tex.strip() and eq.caption.strip() and eq.code
    assert PAPER_URL == "https://arxiv.org/abs/1401.4082"
    assert f"[arXiv 1401.4082]({PAPER_URL})" in paper_line(lesson)
    for _, url in lesson.also:
        assert url.startswith("https://arxiv.org/abs/")


def test_the_inference_gap_is_taught_on_posterior_and_likelihoods():
    for page in ("posterior", "likelihoods"):
        tex = " ".join(eq.tex for eq in LESSONS[page].equations)
        assert "approximation gap" in tex and "amortisation gap" in tex
        assert any("dlgm.gap.inference_gaps" in eq.code for eq in LESSONS[page].equations)


@pytest.mark.parametrize(
    "name",
    sorted({n for lesson in LESSONS.values() for eq in lesson.equations for n in eq.code}),
)
def test_named_dlgm_objects_exist(name):
    assert name.startswith("dlgm.")
    assert resolve(name) is not None


def test_resolve_fails_on_a_missing_name():
    with pytest.raises(AttributeError):
        resolve("dlgm.grid.no_such_function")


def test_lessons_import_neither_torch_nor_dlgm():
    """The Models page draws its lesson before the heavy imports (its title comes first)."""
    code = "import sys, app.lessons; print(sorted({'torch', 'dlgm'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- LaTeX
@pytest.mark.parametrize("tex", [t for t, _ in all_tex()])
def test_latex_is_well_formed(tex):
    assert structure_errors(tex) == []


@pytest.mark.parametrize(
    "bad", ["", r"\frac{1}{2", r"a}", r"\left( x", r"\begin{aligned} x \end{array}", "$x$"]
)
def test_the_structure_check_finds_faults(bad):
    assert structure_errors(bad)


def test_latex_renders_in_streamlits_katex(tmp_path):
    items = all_tex()
    errors = katex_errors(items + [(r"\nosuchmacro{x}", True), ("\\frac{1}{2", True)], tmp_path)
    assert errors[-2] and errors[-1], "the checker must reject bad LaTeX"
    bad = {tex: e for (tex, _), e in zip(items, errors[:-2], strict=True) if e}
    assert not bad, bad


# ---------------------------------------------------------------------------- open / collapsed
def test_a_lesson_opens_on_the_first_visit_only():
    state = {}
    assert opens_expanded(state, "models") is True
    assert opens_expanded(state, "models") is True  # a rerun of the same visit
    assert opens_expanded(state, "samples") is True
    assert opens_expanded(state, "models") is False  # a later visit
    assert opens_expanded(state, "models") is False
    assert opens_expanded(state, "samples") is False


# ---------------------------------------------------------------------------- pages
def lesson_box(at, page: str):
    boxes = [e for e in at.expander if e.label == f"Lesson: {LESSONS[page].title}"]
    assert len(boxes) == 1, [e.label for e in at.expander]
    return boxes[0]


@pytest.mark.parametrize("page", sorted(LESSONS))
def test_every_page_opens_with_its_lesson(page):
    at = open_page(page)
    box = lesson_box(at, page)
    assert box.proto.expanded  # the first visit of this page in the session
    assert [m.value for m in box.latex] == [f"$$\n{eq.tex}\n$$" for eq in LESSONS[page].equations]
    text = " ".join(m.value for m in box.markdown)
    assert "arxiv.org/abs/1401.4082" in text and "Try this" in text


def test_a_lesson_stays_open_on_rerun_and_is_collapsed_on_the_next_visit():
    at = open_page("samples")
    at.number_input(key="smp_seed").set_value(3).run()
    assert lesson_box(at, "samples").proto.expanded
    at.switch_page("app/pages/models.py").run()
    assert not lesson_box(at, "models").proto.expanded  # models was the first page shown
    at.switch_page("app/pages/samples.py").run()
    assert not at.exception
    assert not lesson_box(at, "samples").proto.expanded
