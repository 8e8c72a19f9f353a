"""The course kit's exercise checks and editions.

The checks are held to answers computed here from a plain Hugging Face model (forward
pre-hooks on the attention output projection, float64; nothing from coax_nb runs the
model): the right answer passes, and each usual mistake, made here by hand, fails with the
hint that names it. The editions: the student's has no solution, both keep every exercise
and check cell, a rebuild writes the same bytes, and the committed ones are up to date.
"""
import json
import math
from pathlib import Path

import nbformat
import pytest
import torch
from transformers import AutoModelForCausalLM

from coax_nb import organisms
from coax_nb.cli import main
from coax_nb.course import EXERCISES, CheckFailed, LessonError, build, check, lessons, read_lesson, stale
from coax_nb.course.editions import edition, exercise_cells
from coax_nb.inputs import resolve

ROOT = Path(__file__).resolve().parent.parent
ORGANISM = "ioi_dormant"
S = [(1, 1), (1, 0), (1, 2)]  # the card's primaries
BACKUP = (2, 1)


@pytest.fixture(scope="module")
def run():
    return resolve(f"organism:{ORGANISM}", "default", 24, None, prompt_seed=3, device="cpu", progress=False)


@pytest.fixture(scope="module")
def hf():
    model = AutoModelForCausalLM.from_pretrained(str(organisms.path(ORGANISM)), attn_implementation="eager")
    return model.double().eval()


def hf_logits(hf, prompts, zero=(), freeze=(), clean_z=None):
    """Last-position logits [N, V] with ``zero`` heads' outputs set to 0 and ``freeze``
    heads' set to their clean values (``clean_z``: layer -> the clean c_proj input)."""
    H = hf.config.n_head
    dh = hf.config.n_embd // H
    record, hooks = {}, []
    for layer, block in enumerate(hf.transformer.h):
        def pre(module, args, layer=layer):
            x = args[0].clone()
            record[layer] = args[0].detach().clone()
            for lay, h in zero:
                if lay == layer:
                    x[..., h * dh:(h + 1) * dh] = 0
            for lay, h in freeze:
                if lay == layer:
                    x[..., h * dh:(h + 1) * dh] = clean_z[layer][..., h * dh:(h + 1) * dh]
            return (x,)
        hooks.append(block.attn.c_proj.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            out = hf(torch.tensor(prompts)).logits[:, -1]
    finally:
        for handle in hooks:
            handle.remove()
    return out, record


def feature(z0, z, centered=True, p=None):
    """The centered Fisher feature of z0 -> z, in the metric p (default softmax(z0))."""
    p = torch.softmax(z0, -1) if p is None else p
    d = z - z0
    if centered:
        d = d - (p * d).sum(-1, keepdim=True)
    return p.sqrt() * d


def energy(f):
    return (f ** 2).sum(-1).mean().item()


def fails(exercise, answer, **context):
    with pytest.raises(CheckFailed) as info:
        check(exercise, answer, **context)
    return info.value


def test_fisher_energy_right_answer_and_each_named_mistake(run, hf):
    prompts = run.task.prompts
    assert len({len(p) for p in prompts}) == 1  # one length: the last position is the output position
    z0, _ = hf_logits(hf, prompts)
    u = (1, 1)
    zu, _ = hf_logits(hf, prompts, zero=[u])
    f = feature(z0, zu)
    assert check("fisher_energy", energy(f), engine=run.engine, unit="L1H1").exercise == "fisher_energy"
    p0, pu = torch.softmax(z0, -1), torch.softmax(zu, -1)
    d = zu - z0
    mistakes = {
        "centering": energy(feature(z0, zu, centered=False)),
        "square": f.norm(dim=-1).mean().item(),
        "weight": energy(p0 * (d - (p0 * d).sum(-1, keepdim=True))),
        "sum": energy(f) * len(prompts),
        "kl": (p0 * (p0.log() - pu.log())).sum(-1).mean().item(),
        "probabilities": energy(p0.sqrt() * ((pu - p0) - (p0 * (pu - p0)).sum(-1, keepdim=True))),
        "reference": energy(pu.sqrt() * (d - (pu * d).sum(-1, keepdim=True))),
    }
    words = {"centering": "centering", "square": "square", "weight": "sqrt(p0)", "sum": "mean",
             "kl": "KL", "probabilities": "logits", "reference": "reference"}
    for name, wrong in mistakes.items():
        assert not math.isclose(wrong, energy(f), rel_tol=0.05), name  # each mistake really is off here
        err = fails("fisher_energy", wrong, engine=run.engine, unit="L1H1")
        assert err.mistake == name and words[name] in err.hint, (name, err.hint)
    # a number no listed mistake gives: a plain "how far off", never a wrong diagnosis
    err = fails("fisher_energy", energy(f) * 1.7, engine=run.engine, unit="L1H1")
    assert err.mistake is None and "1.7 times" in err.hint


def test_blank_and_malformed_answers_say_what_they_are(run):
    e = run.engine
    for blank in (None, ...):
        err = fails("fisher_energy", blank, engine=e, unit="L1H1")
        assert err.mistake == "blank" and "not answered yet" in err.hint
    assert fails("fisher_energy", float("nan"), engine=e, unit="L1H1").mistake == "non-finite"
    assert fails("fisher_energy", torch.ones(3), engine=e, unit="L1H1").mistake == "shape"
    assert fails("fisher_energy", "0.1", engine=e, unit="L1H1").mistake == "type"
    assert fails("primaries", [], engine=e).mistake == "blank"
    assert fails("primaries", ["L9H9"], engine=e).mistake == "type"  # no such head in a 3x4 model
    # a one-element tensor is a number
    from coax_nb import Variant, ablation_energy

    check("fisher_energy", torch.tensor([ablation_energy(e, Variant.zero(e.units(["L2H3"])))]), engine=e, unit="L2H3")
    with pytest.raises(KeyError, match="fisher_energy"):
        check("fisher", 0.1, engine=e)
    with pytest.raises(TypeError, match="engine="):
        check("fisher_energy", 0.1, unit="L1H1")
    with pytest.raises(ValueError, match="outside S"):
        check("coax_score", 0.1, engine=e, unit="L1H1", primaries=["L1H1", "L1H0"])
    assert isinstance(CheckFailed("x", "y"), AssertionError)  # a failed check stops a notebook run like assert


def test_coax_score_right_answer_sign_and_reference(run, hf):
    prompts = run.task.prompts
    z0, _ = hf_logits(hf, prompts)
    zu, _ = hf_logits(hf, prompts, zero=[BACKUP])
    zS, _ = hf_logits(hf, prompts, zero=S)
    zSu, _ = hf_logits(hf, prompts, zero=S + [BACKUP])
    single = energy(feature(z0, zu))
    p0 = torch.softmax(z0, -1)
    conditional = energy(feature(zS, zSu, p=p0))  # the clean metric, CoAx's default geometry
    comp = conditional - single
    ctx = dict(engine=run.engine, unit="L2H1", primaries=["L1H1", "L1H0", "L1H2"])
    assert comp > 0.01  # the backup wakes up: the check has something to tell apart
    check("coax_score", comp, **ctx)
    wrong = {"sign": single - conditional, "reference": energy(feature(z0, zSu)) - single,
             "ratio": conditional / single, "geometry": energy(feature(zS, zSu)) - single}
    for name, value in wrong.items():
        err = fails("coax_score", value, **ctx)
        assert err.mistake == name and name in err.hint, err.hint


def test_synergy_cell_right_answer_and_mistakes(run, hf):
    prompts = run.task.prompts
    u, v = (1, 1), BACKUP
    z0, _ = hf_logits(hf, prompts)
    fu, fv, fuv = (feature(z0, hf_logits(hf, prompts, zero=z)[0]) for z in ([u], [v], [u, v]))
    norm = math.sqrt(energy(fu) * energy(fv))
    ctx = dict(engine=run.engine, u="L1H1", v="L2H1")
    check("synergy_cell", energy(fuv - fu - fv) / norm, **ctx)
    wrong = {"normalisation": energy(fuv - fu - fv),
             "energies": (energy(fuv) - energy(fu) - energy(fv)) / norm,
             "sign": energy(fuv + fu + fv) / norm,
             "square": (fuv - fu - fv).norm(dim=-1).mean().item() / norm}
    for name, value in wrong.items():
        assert fails("synergy_cell", value, **ctx).mistake == name, name


def test_freezing_fraction_right_answer_and_complement(run, hf):
    prompts, task = run.task.prompts, run.task
    X = [BACKUP, (2, 0), (2, 2)]
    others = [(lay, h) for lay in range(3) for h in range(4) if (lay, h) not in S]
    z0, clean_z = hf_logits(hf, prompts)

    def metric(z):
        return task.metric(list(z[:, None, :])).mean().item()
    m_S = metric(hf_logits(hf, prompts, zero=S)[0])
    m_none = metric(hf_logits(hf, prompts, zero=S, freeze=others, clean_z=clean_z)[0])
    m_X = metric(hf_logits(hf, prompts, zero=S, freeze=X, clean_z=clean_z)[0])
    removed = (m_S - m_X) / (m_S - m_none)
    ctx = dict(engine=run.engine, primaries=["L1H1", "L1H0", "L1H2"], selected=["L2H1", "L2H0", "L2H2"])
    assert 0.5 < removed <= 1.05  # the organism's backups do the repairing
    check("freezing_fraction", removed, **ctx)
    assert fails("freezing_fraction", 1 - removed, **ctx).mistake == "complement"
    assert fails("freezing_fraction", (metric(z0) - m_X) / (m_S - m_none), **ctx).mistake == "reference"


def test_primaries_check_names_backups_and_the_single_ablation_trap():
    r = resolve(f"organism:{ORGANISM}", "default", 64, None, prompt_seed=0, device="cpu", progress=False)
    e = r.engine
    check("primaries", ["L1H1", "L1H0", "L1H2"], engine=e)
    check("primaries", ("1.2", "1.1", "1.0"), engine=e)  # any head spelling, any order
    err = fails("primaries", ["L1H1", "L1H0", "L1H2", "L2H1"], engine=e)
    assert err.mistake == "backup" and "L2H1 is a backup" in err.hint
    err = fails("primaries", ["L1H1", "L1H0"], engine=e)
    assert err.mistake == "threshold" and "missing L1H2" in err.hint
    from coax_nb import single_scan

    sc = single_scan(e, progress=False)
    top3 = [str(sc.units[i]) for i in sc["single"].argsort()[::-1][:3]]
    assert set(top3) != {"L1H1", "L1H0", "L1H2"}  # self-repair hides the primaries from single ablation
    assert fails("primaries", top3, engine=e).mistake == "single-ablation"


# ------------------------------------------------------------------------- editions
def test_every_lesson_has_checked_exercises_with_blanks():
    for path in lessons():
        nb = read_lesson(path)
        rows = exercise_cells(nb)
        assert rows, path.name
        for row in rows:
            assert set(row["exercises"]) <= set(EXERCISES), path.name
            blank = nb.cells[row["exercise_cell"]].source
            assert "= ..." in blank or "= []" in blank, (path.name, blank)
    assert {x for p in lessons() for x in read_lesson(p).metadata["coax_course"]["exercises"]} == set(EXERCISES)


def test_student_edition_strips_solutions_and_keeps_marked_cells(tmp_path):
    written = build(tmp_path)
    assert [p.name for p in written["student"]] == [p.stem + ".ipynb" for p in lessons()]
    for src, student_path, teacher_path in zip(lessons(), written["student"], written["instructor"]):
        source = read_lesson(src)
        student = nbformat.read(str(student_path), as_version=4)
        teacher = nbformat.read(str(teacher_path), as_version=4)
        nbformat.validate(student)
        tags = lambda nb, tag: [c.source for c in nb.cells if tag in c.metadata.get("tags", [])]  # noqa: E731
        assert tags(student, "solution") == [] and tags(teacher, "solution") == tags(source, "solution") != []
        for tag in ("exercise", "check", "parameters"):
            assert tags(student, tag) == tags(teacher, tag) == tags(source, tag)
        assert [c.source for c in teacher.cells] == [c.source for c in source.cells]
        solutions = "\n".join(tags(source, "solution"))
        assert all(c.source not in solutions for c in student.cells if c.cell_type == "code" and c.source)
        assert student.metadata["coax_course"]["edition"] == "student"
        assert all(not c.get("outputs") for c in student.cells)
    first = {p: p.read_bytes() for ps in written.values() for p in ps}
    build(tmp_path)
    assert {p: p.read_bytes() for p in first} == first  # same source, same bytes
    assert stale(tmp_path) == []
    (tmp_path / "student" / "99_extra.ipynb").write_text("{}")
    assert stale(tmp_path) == ["student/99_extra.ipynb (no lesson builds it)"]


def test_committed_editions_are_up_to_date(capsys):
    assert stale(ROOT / "course") == [], "run: coax-nb course build --out course"
    assert main(["course", "build", "--out", str(ROOT / "course"), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_course_build_command_writes_and_checks(tmp_path, capsys):
    assert main(["course", "build", "--out", str(tmp_path), "--edition", "student"]) == 0
    assert f"student edition: {len(lessons())} notebooks" in capsys.readouterr().out and not (tmp_path / "instructor").exists()
    assert main(["course", "build", "--out", str(tmp_path)]) == 0
    path = tmp_path / "instructor" / f"{lessons()[0].stem}.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"][0]["source"] = "# edited by hand"
    path.write_text(json.dumps(nb))
    assert main(["course", "build", "--out", str(tmp_path), "--check"]) == 1
    assert f"instructor/{path.name}" in capsys.readouterr().err


@pytest.mark.parametrize("cells, message", [
    ('# %% tags=["solution"]\nx = 1\n', "must follow its exercise"),
    ('# %% tags=["exercise"]\nx = ...\n# %%\nprint(x)\n', "solution and check cells right after"),
    ('# %% tags=["exercise"]\nx = ...\n# %% tags=["solution"]\nx = 1\n', "has no check cell"),
    ('# %% tags=["exercise"]\nx = ...\n# %% tags=["check"]\nprint(x)\n', "calls check("),
    ('# %%\nx = 1\n', "no exercise"),
])
def test_malformed_lessons_are_refused_with_the_cell(tmp_path, cells, message):
    (tmp_path / "01_bad.py").write_text(cells)
    with pytest.raises(LessonError, match=message.replace("(", r"\(")):
        build(tmp_path / "out", source=tmp_path)


def test_edition_name_is_checked():
    with pytest.raises(ValueError, match="student, instructor"):
        edition(read_lesson(lessons()[0]), "teacher")
