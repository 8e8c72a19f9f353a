"""One resolver of a run's inputs (coax_nb.inputs), and the command line built on it."""
import pytest

from coax_nb import ioi_task, organisms
from coax_nb.organisms import task_for
from coax_nb.cli import main as cli_main
from coax_nb.inputs import heads_text, organism_name, resolve, resolve_task
from coax_nb.units import Unit

HW = "organism:handwired"


def test_organism_name_is_read_in_one_place():
    assert organism_name("organism:handwired") == "handwired"
    assert organism_name("gpt2") is None and organism_name("/some/dir") is None and organism_name(None) is None
    with pytest.raises(ValueError, match="names no organism"):
        organism_name("organism:")
    assert organisms.organism_name is organism_name


def test_organism_defaults_come_from_its_card():
    run = resolve(HW, n_prompts=8)
    card = organisms.card("handwired")
    assert run.model_spec == HW and len(run.task) == 8 and run.engine.task is run.task
    assert run.primaries == [Unit(*x) for x in card["primaries"]] and run.primaries_source == "organism card"
    assert run.truth == [Unit(*x) for x in card["backups"]]
    # the organism's own task: its card's names, the same prompts as task_for
    assert run.task.prompts == organisms.task_for(HW, 8, prompt_seed=0).prompts


def test_given_primaries_as_one_string_or_a_list():
    run = resolve(HW, n_prompts=4, primaries="L1H1 2.0", prompt_seed=3)
    assert run.primaries == [Unit(1, 1), Unit(2, 0)] and run.primaries_source == "given"
    assert run.task.prompts == organisms.task_for(HW, 4, prompt_seed=3).prompts
    again = resolve(run.model, n_prompts=4, primaries=["L1H1", (2, 0)], prompt_seed=3)  # a loaded model too
    assert again.primaries == run.primaries and again.model_spec == HW and again.truth == run.truth
    assert resolve(HW, n_prompts=4, primaries="").primaries_source == "organism card"  # papermill's empty string


def test_tasks_by_name():
    run = resolve(HW, task="induction", n_prompts=3)
    assert run.task.name == "induction" and run.engine.position_mode == "all"
    own = resolve_task(run.model, HW, "ioi", 5)  # the organism's own kind: its card's task (names, templates)
    assert own.name == "ioi" and own.prompts == task_for(HW, 5).prompts
    with pytest.warns(UserWarning, match="dropped"):  # a generic IOI task: the organism knows only its card's names
        assert ioi_task(run.model, 5).name == "ioi"


@pytest.mark.parametrize("kwargs, message", [
    (dict(task="nope"), "unknown task"),
    (dict(n_prompts=0), "n_prompts must be an integer"),
    (dict(n_prompts=2.5), "n_prompts must be an integer"),
    (dict(prompt_seed=-1), "prompt_seed must be an integer"),
    (dict(primaries="nine.nine"), "cannot read unit"),
    (dict(primaries=9.10), "9.10 becomes 9.1"),
    (dict(primaries="L9H9"), "outside the model"),
    (dict(model="organism:nope"), "unknown organism"),
])
def test_bad_inputs_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve(**{"model": HW, "n_prompts": 4, **kwargs})


def test_other_models_need_primaries(toy_dir):
    with pytest.raises(ValueError, match="give the primary heads"):
        resolve(str(toy_dir), task="ioi", n_prompts=4)
    run = resolve(str(toy_dir), task="ioi", n_prompts=4, primaries="L1H0")
    assert run.truth == [] and run.primaries == [Unit(1, 0)]


def test_heads_text_survives_papermill():
    assert heads_text([(9, 10), "L9H9", "9.6"]) == "L9H10 L9H9 L9H6"
    assert heads_text((9, 10)) == "L9H10" and heads_text(None) is None and heads_text(" ") is None


def test_cli_primaries_and_the_deprecated_seed(capsys):
    argv = ["scan", "--model", HW, "--prompts", "8", "--quiet", "--top", "2"]
    assert cli_main(argv + ["--primaries", "1.0", "L1H1"]) == 0
    out = capsys.readouterr()
    assert "primaries S = L1H0, L1H1 (given)" in out.out and "warning" not in out.err
    assert cli_main(argv + ["--seed", "1.0", "1.1"]) == 0
    old = capsys.readouterr()
    assert "--seed is renamed --primaries" in old.err and old.out.splitlines()[2:] == out.out.splitlines()[2:]
    assert cli_main(argv + ["--primaries", "9.10"]) == 2
    assert "outside the model" in capsys.readouterr().err
