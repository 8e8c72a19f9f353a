"""Every bad `coax-nb` invocation ends with one line on stderr, `coax-nb: error: ...`, that
names the problem, and exit code 2, before any model is loaded or any scan or kernel
starts (so each case here takes well under a second, in-process)."""
import os

import pytest
import torch

from coax_nb.cli import main

HW = "organism:handwired"


@pytest.fixture
def paths(tmp_path):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real").mkdir()
    empty_dir = tmp_path / "empty_model"
    empty_dir.mkdir()
    return {"tmp": str(tmp_path), "file": str(a_file), "link": str(link), "empty": str(empty_dir),
            "new_out": str(tmp_path / "new_out")}


# (argv, words the one line must contain); {name} is filled from the `paths` fixture
CASES = [
    # the command and its flags
    (["bogus"], ["invalid choice: 'bogus'"]),
    (["scan", "--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
    (["scan", "--by", "bogus"], ["--by", "invalid choice: 'bogus'", "comp"]),
    (["scan", "--prompts", "0"], ["--prompts", "integer >= 1", "'0'"]),
    (["scan", "--prompts", "-3"], ["--prompts", "integer >= 1", "'-3'"]),
    (["scan", "--prompts", "many"], ["--prompts", "'many'"]),
    (["scan", "--prompt-seed", "-1"], ["--prompt-seed", "integer >= 0"]),
    (["scan", "--top", "0"], ["--top", "integer >= 1"]),
    (["scan", "--top-r", "1"], ["--top-r", "every score would be 0", "at least 2"]),
    (["scan", "--top-r", "-5"], ["--top-r", "integer >= 0"]),
    (["scan", "--position-mode", "middle"], ["--position-mode", "invalid choice: 'middle'"]),
    (["scan", "--device", "bogus"], ["--device", "unknown device 'bogus'"]),
    (["scan", "--primaries", "L0H0", "--seed", "L0H1"], ["--primaries only"]),
    # --json is checked before the scan, so the scores are never lost
    (["scan", "--model", HW, "--json", "{tmp}"], ["--json", "is a folder", "scores.json"]),
    (["scan", "--model", HW, "--json", "{file}/scores.json"], ["--json", "a_file.txt", "is a file, not a folder"]),
    (["scan", "--model", HW, "--json", "/proc/coax-nb-test/scores.json"], ["--json", "cannot be written"]),
    # models, tasks and heads
    (["scan", "--model", "organism:nope"], ["unknown organism 'nope'", "handwired"]),
    (["scan", "--model", HW, "--primaries", "L9H9"], ["L9H9", "outside the model", "layers run 0..2"]),
    (["scan", "--model", HW, "--primaries", "nine"], ["cannot read", "'nine'", "L9H9"]),
    (["scan", "--model", HW, "--task", "bogus"], ["unknown task 'bogus'", "induction"]),
    (["scan", "--model", "./no/such/model", "--primaries", "L0H0"], ["no model directory", "./no/such/model"]),
    (["scan", "--model", "{file}", "--primaries", "L0H0"], ["a_file.txt", "is a file", "save_pretrained"]),
    (["scan", "--model", "{empty}", "--primaries", "L0H0"], ["no config.json"]),
    (["scan", "--model", "{empty}"], ["give the primary heads"]),
    (["scan", "--model", HW, "--dtype", "fp8"], ["unknown dtype 'fp8'"]),
    # report: checked before the kernel starts
    (["report", "--prompts", "0"], ["--prompts", "integer >= 1"]),
    (["report", "--prompts", "-1"], ["--prompts", "integer >= 1"]),
    (["report", "--top", "0"], ["--top", "integer >= 1"]),
    (["report", "--device", "bogus"], ["--device", "unknown device"]),
    (["report", "--out", "{file}"], ["--out", "a_file.txt", "is a file, not a folder"]),
    (["report", "--out", "{link}"], ["--out", "symbolic link", "real"]),
    (["report", "--out", "/proc/coax-nb-test-report"], ["--out", "cannot be written"]),
    (["report", "--out", "{file}/sub"], ["--out", "a_file.txt", "is a file, not a folder"]),
    (["report", "--model", "organism:nope", "--out", "{new_out}"], ["unknown organism 'nope'"]),
    (["report", "--model", HW, "--primaries", "L9H9", "--out", "{new_out}"], ["L9H9", "outside the model"]),
    (["report", "--model", HW, "--primaries", "9.x", "--out", "{new_out}"], ["cannot read", "'9.x'"]),
    (["report", "--model", HW, "--task", "bogus", "--out", "{new_out}"], ["unknown task 'bogus'"]),
    (["report", "--model", "./no/such/model", "--primaries", "L0H0", "--out", "{new_out}"], ["no model directory"]),
    (["report", "--model", "{file}", "--primaries", "L0H0", "--out", "{new_out}"], ["is a file"]),
    (["report", "--model", "{empty}", "--out", "{new_out}"], ["give the primary heads"]),
    (["report", "--prompt-seed", "1", "--prompt-seeds", "1", "15"], ["--prompt-seeds", "not allowed with", "--prompt-seed"]),
    (["report", "--prompt-seeds", "1", "-2"], ["--prompt-seeds", "integer >= 0", "'-2'"]),
    (["report", "--prompt-seeds"], ["--prompt-seeds", "expected at least one argument"]),
    (["report", "--model", HW, "--prompt-seeds", "1", "15", "1", "--out", "{new_out}"], ["repeats seed(s) 1"]),
    # the course kit
    (["course"], ["the following arguments are required", "see coax-nb course --help"]),
    (["course", "build", "--edition", "bogus"], ["--edition", "invalid choice: 'bogus'", "student"]),
    (["course", "site", "--bogus"], ["unrecognized arguments: --bogus"]),
]
if not torch.cuda.is_available():
    CASES += [(["scan", "--model", HW, "--device", "cuda"], ["device='cuda'", "no CUDA GPU"]),
              (["report", "--model", HW, "--device", "cuda", "--out", "{new_out}"], ["no CUDA GPU"])]


def run_main(argv):
    """main() in-process: (exit code, stderr lines); argparse's own errors exit via SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_invocation_is_one_line_and_exit_2(argv, words, paths, capsys):
    argv = [a.format(**paths) for a in argv]
    code = run_main(argv)
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert code == 2, (code, out.err)
    assert len(lines) == 1 and lines[0].startswith("coax-nb: error: "), out.err
    for w in words:
        assert w.format(**paths) in lines[0], (w, lines[0])
    assert out.out == ""  # nothing started: no progress line, no table
    assert not os.path.exists(paths["new_out"])  # a refused report creates no folder


def test_cases_cover_every_command_and_the_issue_list():
    commands = {a[0] for a, _ in CASES}
    assert {"scan", "report", "bogus"} <= commands and len(CASES) >= 40
    flat = [" ".join(a) for a, _ in CASES]
    for needed in ("--by bogus", "--json {tmp}", "--out {file}", "--prompts 0", "--prompts -3", "organism:nope",
                   "--primaries L9H9", "--out /proc"):
        assert any(needed in f for f in flat), needed


def test_help_still_works(capsys):
    assert run_main(["report", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--lock-timeout" in text and "replaced together" in text
