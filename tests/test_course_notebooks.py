"""The student edition, executed as a student first opens it: every check cell fails on
the blank with the "not answered yet" hint, and nothing else fails. (The instructor
edition, solutions in, is executed by nbval from course/instructor and by the site build:
there every check passes.)"""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from coax_nb.course import build, lessons
from coax_nb.course.editions import exercise_cells

LESSONS = lessons()


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    return build(tmp_path_factory.mktemp("editions"))


def _execute(path: Path, cwd: Path):
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("index", range(len(LESSONS)), ids=[p.stem for p in LESSONS])
def test_student_checks_fail_on_the_blank_and_only_there(editions, tmp_path, index):
    student = _execute(editions["student"][index], tmp_path)
    checks = {row["check"] for row in exercise_cells(student)}
    assert checks
    for i, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        errors = _errors(cell)
        if i in checks:
            assert len(errors) == 1 and errors[0]["ename"] == "CheckFailed", (i, errors)
            assert "not answered yet" in errors[0]["evalue"], errors[0]["evalue"]
        else:
            assert not errors, (i, cell.source, errors and errors[0]["evalue"])
