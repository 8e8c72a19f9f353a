"""Student and instructor editions of the course, from one source per lesson.

A lesson's source is the instructor's notebook as jupytext ``py:percent`` text
(``lessons/NN_name.py`` in this package). Three cell tags make an exercise:

- ``exercise``: the blank the student fills in (``energy = ...  # your code here``);
  kept in both editions, so the instructor's run also starts from the blank;
- ``solution``: the reference solution, right after its exercise cell; stripped from
  the student edition;
- ``check``: ``check("name", answer, ...)`` (:func:`coax_nb.course.check`), right after
  the exercise (and its solutions); kept in both. On the blank it fails with a hint.

The editions are written as ``.ipynb`` without outputs and with cell ids derived from the
lesson and cell number, so a rebuild of an unchanged source writes the same bytes.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional

LESSONS_DIR = Path(__file__).resolve().parent / "lessons"
EDITIONS = ("student", "instructor")
EXERCISE, SOLUTION, CHECK = "exercise", "solution", "check"
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([a-z_]+)["']""")


class LessonError(ValueError):
    """A lesson source whose exercise cells are not in the shape the editions need."""


def lessons(folder: Optional[Path] = None) -> list[Path]:
    """The lesson sources, in order (``NN_name.py``)."""
    folder = LESSONS_DIR if folder is None else Path(folder)
    found = sorted(folder.glob("[0-9][0-9]_*.py"))
    if not found:
        raise FileNotFoundError(f"no lessons (NN_name.py) in {folder}")
    return found


def _tags(cell) -> set:
    return set(cell.metadata.get("tags", []))


def read_lesson(path: Path):
    """The lesson's notebook, its exercise cells checked (:class:`LessonError` names the cell)."""
    import jupytext

    nb = jupytext.read(str(path))
    exercises, previous = [], None
    for i, cell in enumerate(nb.cells):
        tags = _tags(cell) & {EXERCISE, SOLUTION, CHECK}
        where = f"{Path(path).name}, cell {i}"
        if len(tags) > 1:
            raise LessonError(f"{where}: a cell is one of exercise, solution or check, not {sorted(tags)}")
        tag = next(iter(tags), None)
        if tag and cell.cell_type != "code":
            raise LessonError(f"{where}: a {tag} cell must be a code cell")
        if tag == SOLUTION and previous not in (EXERCISE, SOLUTION):
            raise LessonError(f"{where}: a solution cell must follow its exercise cell")
        if tag == CHECK:
            if previous not in (EXERCISE, SOLUTION):
                raise LessonError(f"{where}: a check cell must follow its exercise (and solution) cells")
            found = _CHECK_CALL.findall(cell.source)
            if not found:
                raise LessonError(f"{where}: a check cell calls check(\"exercise_name\", answer, ...)")
            exercises.extend(found)
        if previous == EXERCISE and tag not in (SOLUTION, CHECK):
            raise LessonError(f"{where}: an exercise cell needs its solution and check cells right after it")
        if previous == SOLUTION and tag not in (SOLUTION, CHECK):
            raise LessonError(f"{where}: a solution needs its check cell right after it")
        previous = tag
    if previous in (EXERCISE, SOLUTION):
        raise LessonError(f"{Path(path).name}: the last exercise has no check cell")
    if not exercises:
        raise LessonError(f"{Path(path).name}: no exercise (cells tagged exercise / solution / check)")
    nb.metadata["coax_course"] = {"lesson": Path(path).stem, "exercises": exercises}
    return nb


def edition(nb, which: str):
    """A copy of a lesson for ``which`` edition: the student's without solution cells."""
    import copy

    import nbformat

    if which not in EDITIONS:
        raise ValueError(f"edition must be one of {', '.join(EDITIONS)}, got {which!r}")
    lesson = nb.metadata["coax_course"]["lesson"]
    out = nbformat.v4.new_notebook()
    out.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                    "language_info": {"name": "python"},
                    "coax_course": dict(nb.metadata["coax_course"], edition=which)}
    for i, cell in enumerate(nb.cells):
        if which == "student" and SOLUTION in _tags(cell):
            continue
        new = copy.deepcopy(cell)
        new.id = f"{lesson[:50]}-{i:03d}"  # stable across builds: same source, same bytes
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        new.metadata = {"tags": cell.metadata["tags"]} if cell.metadata.get("tags") else {}
        out.cells.append(new)
    return out


def _text(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def build(out: Path, editions: Iterable[str] = EDITIONS, source: Optional[Path] = None) -> dict[str, list[Path]]:
    """Write each edition of every lesson to ``out/EDITION/NN_name.ipynb``; returns the
    paths by edition. Files are replaced atomically."""
    from ..io import atomic_write_text, check_writable_folder

    out = check_writable_folder(out, "the course folder")
    editions = list(editions)
    for which in editions:
        if which not in EDITIONS:
            raise ValueError(f"edition must be one of {', '.join(EDITIONS)}, got {which!r}")
    written = {which: [] for which in editions}
    for path in lessons(source):
        nb = read_lesson(path)
        for which in editions:
            written[which].append(atomic_write_text(out / which / f"{path.stem}.ipynb", _text(edition(nb, which))))
    return written


def stale(out: Path, source: Optional[Path] = None) -> list[str]:
    """The edition files under ``out`` that a build would change (missing ones included),
    as ``EDITION/NAME`` -- empty when the committed editions are up to date."""
    found = []
    expected = set()
    for path in lessons(source):
        nb = read_lesson(path)
        for which in EDITIONS:
            target = Path(out) / which / f"{path.stem}.ipynb"
            expected.add(target.resolve())
            if not target.is_file() or target.read_text() != _text(edition(nb, which)):
                found.append(f"{which}/{target.name}")
    for which in EDITIONS:
        for extra in sorted((Path(out) / which).glob("*.ipynb")):
            if extra.resolve() not in expected:
                found.append(f"{which}/{extra.name} (no lesson builds it)")
    return found


def exercise_cells(nb) -> list[dict]:
    """Each check cell of an edition: its index, the exercise it checks, and the index of
    its exercise cell (the tests execute editions and read these cells' outputs)."""
    rows, last_exercise = [], None
    for i, cell in enumerate(nb.cells):
        tags = _tags(cell)
        if EXERCISE in tags:
            last_exercise = i
        if CHECK in tags:
            rows.append({"check": i, "exercise_cell": last_exercise,
                         "exercises": _CHECK_CALL.findall(cell.source)})
    return rows


def summary(nb) -> dict:
    """Title and 'You will learn' bullets of a lesson or tutorial (its first markdown cell)."""
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    title = next((line.lstrip("# ").strip() for line in first.splitlines() if line.startswith("#")), "")
    learn = [line[2:].strip() for line in first.splitlines() if line.startswith("- ")]
    return {"title": title, "learn": learn}
