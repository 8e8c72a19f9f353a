"""The ``coax-nb`` command.

Every error is one line on stderr, ``coax-nb: error: ...``: a usage error or a bad input
exits with 2 (checked before any model loads or scan starts where it can be), a report
whose notebook failed with 1, Ctrl-C with 130. Unexpected exceptions keep their traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

DEFAULT_MODEL = "organism:ioi_dormant"
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of the command."""

    def error(self, message):
        command = self.prog.removeprefix("coax-nb").strip()
        self.exit(EXIT_USAGE, f"coax-nb: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")


def _integer(minimum: int, allowed: str = ""):
    """An argparse type: an integer >= minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}{allowed}, got {text!r}")
        return value
    return parse


def _top_r(text: str) -> int:
    value = _integer(0, " (0 = full vocabulary)")(text)
    if value == 1:
        raise argparse.ArgumentTypeError("1 keeps a single token, whose probability is always 1: every score would "
                                         "be 0; use 0 (full vocabulary) or at least 2")
    return value


def _device(text: str) -> str:
    import torch

    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda or cuda:N") from None
    return text


def _primaries(args):
    """--primaries, or the deprecated --seed (a warning on stderr); None when neither."""
    if args.seed is not None:
        if args.primaries is not None:
            raise ValueError("give the primary heads with --primaries only (--seed is its old name)")
        print("coax-nb: warning: --seed is renamed --primaries; --seed will be removed", file=sys.stderr)
        return " ".join(args.seed)
    return None if args.primaries is None else " ".join(args.primaries)


def _choices(parser) -> None:
    """The analyst's choices, the same for every command that scores."""
    from .metrics import EFFECTS
    from .variant import ABLATIONS

    parser.add_argument("--ablation", choices=ABLATIONS, default="zero",
                        help="what removing a head means: zero (default), mean, or resample (from paired corrupted prompts)")
    parser.add_argument("--effect", choices=EFFECTS, default="fisher",
                        help="what an effect is measured in: fisher (default, label-free), kl, or task (the behaviour metric)")


def cmd_scan(args) -> int:
    from .evaluate import evaluate
    from .inputs import resolve
    from .io import check_writable_file
    from .scores import coax_scan

    if args.json:  # before the scan, so its scores are never lost to a bad path
        check_writable_file(args.json, "--json")
    t0 = time.perf_counter()
    run = resolve(args.model, args.task, args.prompts, _primaries(args), args.prompt_seed, args.device,
                  progress=not args.quiet, dtype=args.dtype, position_mode=args.position_mode)
    scores = coax_scan(run.engine, primaries=run.primaries, top_r=args.top_r, ablation=args.ablation,
                       effect=args.effect, progress=not args.quiet)
    print(f"CoAx scan of {args.model} on {run.task.name} ({len(run.task)} prompts), primaries S = "
          f"{', '.join(map(str, run.primaries))} ({run.primaries_source})")
    print(f"{scores.meta['forward_passes']} forward-pass equivalents, {time.perf_counter() - t0:.1f} s in all\n")
    print(scores.table(args.top, by=args.by))
    if run.truth:
        print(f"\nground-truth backups: {', '.join(map(str, run.truth))}")
        for by in ("comp", "single"):
            r = evaluate(scores, run.truth, by=by)
            pk = r["p@%d" % r["k"]]
            print(f"  {by:>7}: ROC-AUC {r['roc_auc']:.3f}  AP {r['ap']:.3f}  P@{r['k']} {pk:.3f}")
    if args.json:
        scores.to_json(args.json)
        print(f"\nscores written to {args.json}")
    return 0


def cmd_report(args) -> int:
    from .report import execute_report

    # the report says in one line how its notebook failed or stopped; papermill's and
    # asyncio's own records of a stopped kernel would only repeat it as tracebacks
    for name in ("papermill", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    t0 = time.perf_counter()
    artifact = execute_report(args.model, args.task, args.out, primaries=_primaries(args), n_prompts=args.prompts,
                              prompt_seed=args.prompt_seed, prompt_seeds=args.prompt_seeds, device=args.device,
                              top=args.top, ablation=args.ablation, effect=args.effect,
                              robustness=not args.no_robustness, lock_timeout=args.lock_timeout,
                              say=lambda message: print(message, flush=True))
    print(artifact["headline"])
    print(f"\nwrote {args.out}/report.ipynb, {args.out}/report.html and {args.out}/report.json "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_induction(args) -> int:
    from . import organisms
    from .applications.induction import estimate_induction_transfer, induction_transfer
    from .io import atomic_write_text

    models = args.models or [organisms.PREFIX + n for n in organisms.names(kind="induction")]
    options = dict(ks=args.ks, selectors=args.selectors, n_prompts=args.prompts, n_random=args.random)
    if args.estimate:
        estimate_induction_transfer(models, device=args.device, dtype=args.dtype,
                                    half_length=args.half_length, **options)
        return 0
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for induction.json, induction.png and induction.txt")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = induction_transfer(models, half_length=args.half_length, device=args.device, dtype=args.dtype,
                                checkpoint=out / "checkpoint.json", progress=not args.quiet, **options)
    import matplotlib

    matplotlib.use("Agg")
    text = result.table()
    print(text)
    result.to_json(out / "induction.json")
    atomic_write_text(out / "induction.txt", text + "\n")
    fig = result.plot()
    tmp = out / "induction.png.part"
    fig.savefig(tmp, dpi=120, format="png")
    tmp.replace(out / "induction.png")
    (out / "checkpoint.json").unlink(missing_ok=True)  # the result file holds everything now
    print(f"\nwrote {out}/induction.json, induction.txt and induction.png ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_page(args) -> int:
    from .results import load
    from .widgets.pages import result_page

    source = Path(args.results)
    if not source.is_file():
        raise ValueError(f"no results file {source}; give a JSON written by coax-nb (e.g. coax-nb scan --json)")
    result = load(source)
    out = result_page(result, args.out, title=args.title, truth=args.truth, repeat=args.repeat - 1)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): a {type(result).__name__} page that opens offline, "
          "no kernel needed")
    return 0


def cmd_reproduce(args) -> int:
    from .io import check_writable_file
    from .presets import preset, reproduce

    p = preset(args.preset)
    if args.out:  # checked before the model loads: a long run must not end on an unwritable path
        check_writable_file(args.out)
    model = args.model or p.model
    seeds = args.prompt_seeds if args.prompt_seeds is not None else list(p.prompt_seeds)
    print(f"{p.name}: {p.about}", file=sys.stderr)
    print(f"model {model}; {args.prompts or p.n_prompts} prompts per set; prompt seeds {' '.join(map(str, seeds))}; "
          f"{p.position_mode} position, {'full vocabulary' if not p.top_r else f'top-{p.top_r}'}, {p.ablation} "
          "ablation", file=sys.stderr)
    result = reproduce(p.name, model=model, prompt_seeds=seeds, n_prompts=args.prompts, device=args.device,
                       progress=not args.quiet)
    print(result.table())
    if args.out:
        result.to_json(args.out)
        print(f"written: {args.out}", file=sys.stderr)
    return 0


def cmd_organisms(args) -> int:
    from . import organisms

    for name, summary in organisms.list().items():
        print(f"{organisms.PREFIX}{name:<14} {summary}")
    return 0


def cmd_course_build(args) -> int:
    from .course import EDITIONS, build, stale

    if args.check:
        found = stale(args.out)
        if found:
            print(f"coax-nb: error: out of date under {args.out}: {', '.join(found)}; run coax-nb course build "
                  f"--out {args.out}", file=sys.stderr)
            return EXIT_FAILED
        print(f"the editions under {args.out} are up to date")
        return 0
    written = build(args.out, editions=args.edition or EDITIONS)
    for which, paths in written.items():
        print(f"{which} edition: {len(paths)} notebooks in {Path(args.out) / which}")
    return 0


def cmd_course_site(args) -> int:
    from .course import build_site

    for name in ("papermill", "asyncio"):  # the failing cell is named in one line (ReportError)
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    tutorials = False if args.no_tutorials else args.tutorials
    build_site(args.out, tutorials=tutorials, say=lambda message: print(message, flush=True))
    return 0


def _add_primaries(parser) -> None:
    parser.add_argument("--primaries", nargs="+", default=None, metavar="HEAD",
                        help="primary heads S, e.g. L9H9 L9H6 or 9.9 9.6 (organisms: their card's); or auto, "
                        "auto:METHOD to discover them (METHOD: single (default), atp, role, acdc; options :k=N "
                        "(default 3), :tau=X for acdc, e.g. auto:acdc:tau=0.3)")
    parser.add_argument("--seed", nargs="+", default=None, metavar="HEAD", help="deprecated: the old name of --primaries")


def build_parser() -> argparse.ArgumentParser:
    from .scores import SCORE_DOCS

    p = _Parser(prog="coax-nb", description="Conditional Co-Ablation (CoAx): which heads carry a "
                                "behaviour, including backups that only wake up when others are removed.")
    from .version import __version__

    p.add_argument("--version", action="version", version=f"coax-nb {__version__}")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("scan", help="score every head: single ablation vs CoAx given a primary set")
    s.add_argument("--model", default=DEFAULT_MODEL, help="organism:NAME, a local HF directory, or a hub name "
                   f"(default {DEFAULT_MODEL})")
    s.add_argument("--task", default="default", help="ioi, induction, or default (the organism's own task)")
    _add_primaries(s)
    s.add_argument("--prompts", type=_integer(1), default=64, help="number of prompts (default 64)")
    s.add_argument("--prompt-seed", type=_integer(0), default=0, help="random seed of the prompt generator")
    s.add_argument("--position-mode", choices=["last", "all", "full"], default=None)
    s.add_argument("--top-r", type=_top_r, default=0, help="fixed clean top-r support (0 = full vocabulary)")
    s.add_argument("--top", type=_integer(1), default=10, help="rows to print")
    s.add_argument("--by", default="comp", choices=list(SCORE_DOCS), help="score to rank by (default comp)")
    _choices(s)
    s.add_argument("--device", type=_device, default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    s.add_argument("--dtype", default=None, help="fp32 (default), fp64; bf16/fp16 on a GPU")
    s.add_argument("--json", default=None, help="write the per-head scores to this JSON file")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_scan)
    r = sub.add_parser("report", help="execute the report notebook: executed .ipynb, offline HTML and a JSON artifact")
    r.add_argument("--model", default=DEFAULT_MODEL, help=f"organism:NAME, a local HF directory or a hub name "
                   f"(default {DEFAULT_MODEL})")
    r.add_argument("--task", default="default", help="ioi, induction, or default (the organism's own task)")
    _add_primaries(r)
    r.add_argument("--prompts", type=_integer(1), default=64, help="number of prompts (default 64; per seed with "
                   "--prompt-seeds)")
    # one or the other; default None, not 0, so that an explicit --prompt-seed 0 still counts as given
    seeds = r.add_mutually_exclusive_group()
    seeds.add_argument("--prompt-seed", type=_integer(0), default=None, help="random seed of the prompt generator "
                       "(default 0)")
    seeds.add_argument("--prompt-seeds", nargs="+", type=_integer(0), default=None, metavar="SEED",
                       help="several prompt sets, e.g. 1 15 22 8: every computation runs once per seed and every "
                       "number is reported as the mean ± std over them (the robustness panel: the first seed's)")
    r.add_argument("--device", type=_device, default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    r.add_argument("--top", type=_integer(1), default=10, help="rows of the ranking table")
    _choices(r)
    r.add_argument("--no-robustness", action="store_true", help="leave out the robustness panel (bootstrap "
                   "intervals, data efficiency, feature modes, held-out templates: about nine more scans)")
    r.add_argument("--out", default="coax-report", help="output folder (default ./coax-report); its report.ipynb, "
                   "report.html and report.json are replaced together, only when the run succeeds")
    r.add_argument("--lock-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="how long to wait for another report run into the same --out (default 3600)")
    r.set_defaults(func=cmd_report)
    from .applications.induction import DEFAULT_KS, DEFAULT_SELECTORS, SELECTORS

    n = sub.add_parser("induction", help="the induction completion panel over several models (selectors against "
                       "size-matched random and role-matched +own heads; table, figure, family macro)")
    n.add_argument("models", nargs="*", metavar="MODEL", help="organism:NAME, local HF folders or hub names "
                   "(default: every bundled induction organism)")
    n.add_argument("--ks", nargs="+", type=_integer(1), default=list(DEFAULT_KS), metavar="K",
                   help=f"heads added to the primaries (default {' '.join(map(str, DEFAULT_KS))}; clipped to half "
                   "the heads outside them)")
    n.add_argument("--selectors", nargs="+", choices=SELECTORS, default=list(DEFAULT_SELECTORS), metavar="NAME",
                   help=f"from {', '.join(SELECTORS)} (default all but eap_ig)")
    n.add_argument("--prompts", type=_integer(1), default=32, help="prompts per split (default 32)")
    n.add_argument("--half-length", type=_integer(2), default=10, help="tokens repeated (default 10)")
    n.add_argument("--random", type=_integer(1), default=8, help="random head sets per k (default 8)")
    n.add_argument("--device", type=_device, default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    n.add_argument("--dtype", default=None, help="fp32 (default), fp64; bf16/fp16 on a GPU")
    n.add_argument("--out", default="coax-induction", help="output folder (default ./coax-induction); a rerun "
                   "after an interruption resumes from its checkpoint.json")
    n.add_argument("--estimate", action="store_true", help="print each model's memory and time estimate and stop")
    n.add_argument("--quiet", action="store_true", help="no progress bar")
    n.set_defaults(func=cmd_induction)
    g = sub.add_parser("page", help="an interactive, offline HTML page of saved results (no kernel needed)")
    g.add_argument("results", metavar="RESULTS.json", help="a result saved by coax-nb: a scan (UnitScores), "
                   "RecoveryResult, PairScores, Sensitivity, Curves, WakeUp, Knockout or Pruning")
    g.add_argument("-o", "--out", default="coax-page.html", help="the HTML file to write (default ./coax-page.html)")
    g.add_argument("--title", default=None, help="the page title (default: the result's kind and model)")
    g.add_argument("--truth", nargs="+", default=None, metavar="HEAD", help="ground-truth heads to mark (default: "
                   "the result's own, or the organism card's backups when the scan names an organism)")
    g.add_argument("--repeat", type=_integer(1), default=1, help="RecoveryResult: whose repeat's scores to draw "
                   "(default 1)")
    g.set_defaults(func=cmd_page)
    from .presets import PRESETS

    rp = sub.add_parser("reproduce", help="one of the paper's experiments with its settings; prints the paper's "
                        "numbers beside the measured ones")
    rp.add_argument("preset", choices=sorted(PRESETS), help="ioi-gpt2: backup recovery on IOI in GPT-2 small "
                    "(needs the model from the hub, or --model organism:NAME offline)")
    rp.add_argument("--model", default=None, help="run the preset on another model (organism:NAME: its card's "
                    "circuit); default: the preset's")
    rp.add_argument("--prompt-seeds", nargs="+", type=_integer(0), default=None, metavar="SEED",
                    help="prompt sets (default: the preset's, 1 15 22 8 for ioi-gpt2); mean ± std over them")
    rp.add_argument("--prompts", type=_integer(1), default=None, help="prompts per set (default: the preset's, 96)")
    rp.add_argument("--device", type=_device, default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    rp.add_argument("--out", default=None, metavar="FILE.json", help="also save the result (RecoveryResult JSON)")
    rp.add_argument("--quiet", action="store_true", help="no progress bar")
    rp.set_defaults(func=cmd_reproduce)
    from .course.editions import EDITIONS

    c = sub.add_parser("course", help="the course kit: student and instructor editions, the offline site")
    csub = c.add_subparsers(dest="course_command", required=True, metavar="{build,site}", parser_class=_Parser)
    cb = csub.add_parser("build", help="write the student edition (solutions stripped) and the instructor edition "
                         "(solutions in) of every lesson")
    cb.add_argument("--out", default="course", help="folder for EDITION/NN_name.ipynb (default ./course)")
    cb.add_argument("--edition", nargs="+", choices=EDITIONS, default=None, help="only these editions (default both)")
    cb.add_argument("--check", action="store_true", help="write nothing; exit 1 if the editions under --out are "
                    "not what a build writes")
    cb.set_defaults(func=cmd_course_build)
    cs = csub.add_parser("site", help="execute the instructor edition and the tutorials; write a static site that "
                         "reads offline (interactive views embedded, no kernel needed)")
    cs.add_argument("--out", default="coax-site", help="the site folder (default ./coax-site), replaced when "
                    "every page is written")
    cs.add_argument("--tutorials", default=None, metavar="DIR", help="the tutorial notebooks (default: the "
                    "checkout's notebooks/)")
    cs.add_argument("--no-tutorials", action="store_true", help="the lessons only")
    cs.set_defaults(func=cmd_course_site)
    o = sub.add_parser("organisms", help="list the bundled model organisms")
    o.set_defaults(func=cmd_organisms)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    """Run the command; every known error becomes one line on stderr and an exit code."""
    from .models import ModelLoadError
    from .report import ReportError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:
        print(f"coax-nb: interrupted{': ' + _one_line(exc) if str(exc) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ReportError as exc:
        print(f"coax-nb: error: the report failed: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, ModelLoadError, OSError, RuntimeError, FloatingPointError, MemoryError) as exc:
        print(f"coax-nb: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

