"""Tasks: prompt sets with answers and a behaviour metric.

A :class:`Task` holds token-id prompts (BOS included), the output positions the
metric reads (``position_mode``), and per-prompt targets. Three builders:
:func:`ioi_task` (indirect object identification, any tokenizer),
:func:`induction_task` (repeated random tokens) and :func:`custom_task`; and
:func:`ioi_counterfactual`, the same IOI prompts with one name swapped.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import random
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from .compat import renamed

POSITION_MODES = ("last", "all", "full")

IOI_TEMPLATES = (
    "When {IO} and {S} went to the {place}, {S} gave a {object} to",
    "When {S} and {IO} went to the {place}, {S} gave a {object} to",
)
# rewordings of the two templates above, for stability checks on prompts the model was
# not calibrated (or, for the organisms, trained) on; every word is in the organisms' vocabulary
IOI_HELDOUT_TEMPLATES = (
    "When {IO} and {S} went to a {place}, {S} gave a {object} to",
    "When {IO} and {S} went to the {place}, {S} gave the {object} to",
    "{IO} and {S} went to the {place}, {S} gave a {object} to",
    "When {IO} and {S} went to the {place} and {S} gave a {object} to",
    "When {S} and {IO} went to the {place}, {S} gave the {object} to",
)
IOI_NAMES = (
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Kate", "Paul", "Mark",
    "Jane", "Anne", "Ben", "Lisa", "Alex", "Sam", "Max", "Jack", "Rose", "Ryan", "Steve",
    "Laura", "Adam", "Carl", "Emma", "Eric", "Grace", "Henry", "Ian", "Joe", "Lucy",
)
IOI_PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
IOI_OBJECTS = ("drink", "ring", "kiss", "bone", "basketball", "computer", "necklace", "snack")


def tokenizer_fingerprint(tokenizer) -> Optional[str]:
    """A hash of the vocabulary, used to catch prompts built with another tokenizer."""
    if tokenizer is None:
        return None
    vocab = tokenizer.get_vocab()
    h = hashlib.sha256()
    for tok, idx in sorted(vocab.items(), key=lambda kv: kv[1]):
        h.update(f"{idx}:{tok}\n".encode())
    return h.hexdigest()[:16]


def check_count(value, name: str, minimum: int = 1, why: str = "") -> int:
    """``value`` as a plain int of at least ``minimum``. A bool, float or string is
    refused (TypeError) rather than truncated or read as 1; so is a smaller number
    (ValueError). ``why`` says what the number counts, for the message."""
    example = f"pass an int, e.g. {name}={max(minimum, 8)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number >= {minimum}, got {value!r} ({type(value).__name__}); "
                        + example)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}{f' ({why})' if why else ''}; {example}")
    return int(value)


def check_prompt_seeds(seeds, name: str = "prompt_seeds", default: Sequence[int] = ()) -> list[int]:
    """``seeds`` as a non-empty list of distinct whole numbers >= 0, one prompt set each.
    A string is refused (its characters are no seeds); so is a repeated seed, whose prompt
    set would count twice in a mean and shrink its std. ``default`` is named in the
    message for an empty list."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"{name} must be a list of whole numbers, got {seeds!r}")
    seeds = [check_count(s, f"each of {name}", 0) for s in seeds]
    if not seeds:
        raise ValueError(f"{name} is empty; give at least one seed"
                         + (f" (the preset's: {', '.join(map(str, default))})" if default else ""))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"{name} repeats seed(s) {', '.join(map(str, repeated))}; each seed draws one prompt set, "
                         "and a repeated set would count twice in the mean and shrink its std")
    return seeds


def check_choices(values, name: str, choices: Sequence[str], kind: str = "name") -> list[str]:
    """``values`` as a non-empty list of names from ``choices`` (each a ``kind``). A bare
    string is refused (iterating it would give one 'name' per character), as is an
    unknown name."""
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list of names, got the single string {values!r}; "
                        f"write {name}=[{values!r}]")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty; choose one or more of {', '.join(choices)}")
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise ValueError(f"unknown {kind}(s) {unknown}; choose from {', '.join(choices)}")
    return values


def output_positions(length: int, mode: str) -> list[int]:
    """Positions whose next-token prediction is read, for a prompt of ``length`` tokens."""
    if mode == "last":
        return [length - 1]
    if mode == "all":
        return list(range(length - 1))
    if mode == "full":
        return list(range(length))
    raise ValueError(f"position_mode must be one of {POSITION_MODES}, got {mode!r}")


def _token_rows(rows, what: str) -> list[list[int]]:
    """Rows of token ids as plain ints. Text, or a number that is not a whole number, is
    refused: ``int()`` would read 1.5 as token 1, and a string is no list of ids."""
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise TypeError(f"the {what}s must be a list of token-id lists, got {type(rows).__name__}; for text use "
                        "custom_task(model, texts)")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise TypeError(f"{what} {i} is a {type(row).__name__}, not a list of token ids; for text use "
                            "custom_task(model, texts)")
        ids = []
        for t in row:
            whole = isinstance(t, numbers.Integral) or (isinstance(t, torch.Tensor) and t.ndim == 0
                                                        and not t.is_floating_point() and not t.is_complex())
            if not whole or isinstance(t, bool):
                raise TypeError(f"{what} {i} holds {t!r} ({type(t).__name__}), not a token id; token ids are "
                                "whole numbers")
            ids.append(int(t))
        out.append(ids)
    return out


@dataclass
class Task:
    """Prompts plus what the behaviour metric needs.

    ``targets[i]`` / ``distractors[i]`` hold, for each output position of prompt i
    (see :func:`output_positions`), the correct and the distractor token id, or -1
    where that position does not count. The metric is the logit difference
    (correct - distractor) when distractors are given, else the correct token's
    log-probability, averaged over the counted positions.
    """

    name: str
    prompts: list[list[int]]
    position_mode: str = "last"
    targets: Optional[list[list[int]]] = None
    distractors: Optional[list[list[int]]] = None
    texts: Optional[list[str]] = None
    tokenizer_fingerprint: Optional[str] = None
    info: dict = field(default_factory=dict)
    metric_fn: Optional[Callable] = None
    corrupted: Optional[list[list[int]]] = None  # paired prompts for resample ablation, same lengths

    def fingerprint(self) -> str:
        """A hash of everything a score or a loss reads from the task: token ids, output
        positions, targets, distractors, paired corrupted prompts, and a custom
        ``metric_fn`` by name only (a function's behaviour cannot be hashed: the disk cache
        therefore never reuses results of a task that has one)."""
        data = {"prompts": self.prompts, "position_mode": self.position_mode, "targets": self.targets,
                "distractors": self.distractors,
                "metric_fn": None if self.metric_fn is None else getattr(self.metric_fn, "__qualname__", "custom")}
        if self.corrupted is not None:  # absent key: tasks without them hash as they did before
            data["corrupted"] = self.corrupted
        return hashlib.sha256(json.dumps(data, separators=(",", ":"), default=int).encode()).hexdigest()[:16]

    def __post_init__(self):
        if len(self.prompts) == 0:
            raise ValueError(f"task {self.name!r} has an empty prompt set; give at least one prompt")
        output_positions(2, self.position_mode)  # validates the mode
        self.prompts = _token_rows(self.prompts, "prompt")
        for i, p in enumerate(self.prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} of task {self.name!r} is empty")
        if self.distractors is not None and self.targets is None:
            raise ValueError(f"task {self.name!r} has distractors but no targets; the logit difference needs both: "
                             "pass targets= as well, or leave distractors out")
        if self.corrupted is not None:
            self.corrupted = _token_rows(self.corrupted, "corrupted prompt")
            if len(self.corrupted) != len(self.prompts):
                raise ValueError(f"task {self.name!r} has {len(self.corrupted)} corrupted prompts for "
                                 f"{len(self.prompts)} prompts; give one paired corrupted prompt per prompt")
            for i, (c, p) in enumerate(zip(self.corrupted, self.prompts)):
                if len(c) != len(p):
                    raise ValueError(f"corrupted prompt {i} has {len(c)} tokens but prompt {i} has {len(p)}; a "
                                     "paired corrupted prompt must have the same length (resample ablation "
                                     "copies head outputs position by position)")
        for name in ("targets", "distractors"):
            rows = getattr(self, name)
            if rows is None:
                continue
            if len(rows) != len(self.prompts):
                raise ValueError(f"{name} has {len(rows)} rows for {len(self.prompts)} prompts")
            for i, (row, p) in enumerate(zip(rows, self.prompts)):
                want = len(output_positions(len(p), self.position_mode))
                if len(row) != want:
                    raise ValueError(
                        f"{name}[{i}] has {len(row)} entries; prompt {i} has {want} output positions "
                        f"in position_mode={self.position_mode!r}"
                    )

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def answers(self) -> Optional[list[int]]:
        """Correct token at the last output position of each prompt (IOI's answer)."""
        return None if self.targets is None else [row[-1] for row in self.targets]

    def subset(self, idx: Sequence[int], name: Optional[str] = None) -> "Task":
        idx = list(idx)
        bad = [i for i in idx if isinstance(i, bool) or not isinstance(i, numbers.Integral)
               or not -len(self) <= i < len(self)]
        if bad:
            raise IndexError(f"subset index {bad[0]!r} is not a prompt of task {self.name!r}, which has "
                             f"{len(self)} prompts (0..{len(self) - 1})")
        pick = lambda rows: None if rows is None else [rows[i] for i in idx]  # noqa: E731
        return Task(
            name=name or self.name, prompts=pick(self.prompts), position_mode=self.position_mode,
            targets=pick(self.targets), distractors=pick(self.distractors), texts=pick(self.texts),
            tokenizer_fingerprint=self.tokenizer_fingerprint, info=dict(self.info), metric_fn=self.metric_fn,
            corrupted=pick(self.corrupted),
        )

    def metric(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-prompt behaviour metric from per-prompt logits ``[positions, vocab]``."""
        if self.metric_fn is not None:
            out = torch.as_tensor(self.metric_fn(logits, self), dtype=torch.float64)
            if out.shape != (len(self),) or not torch.isfinite(out).all():
                raise ValueError("the task's metric_fn must return one finite number per prompt")
            return out
        if self.targets is None:
            raise ValueError(f"task {self.name!r} has no targets, so it has no behaviour metric; "
                             "build it with targets= or metric_fn=")
        if len(logits) != len(self):
            raise ValueError(f"got logits for {len(logits)} prompts; task {self.name!r} has {len(self)}")
        vals = []
        for i, lg in enumerate(logits):
            lg = lg.double()
            tgt = torch.tensor(self.targets[i], device=lg.device)
            top = max(self.targets[i] + (self.distractors[i] if self.distractors is not None else []))
            if top >= lg.shape[-1]:
                raise ValueError(f"prompt {i} of task {self.name!r} has answer token id {top} outside "
                                 f"the model's vocabulary (0..{lg.shape[-1] - 1}); was the task built with "
                                 "another tokenizer?")
            keep = tgt >= 0
            if not keep.any():
                raise ValueError(f"prompt {i} of task {self.name!r} has no counted position")
            rows = torch.nonzero(keep).flatten()
            if self.distractors is not None:
                dis = torch.tensor(self.distractors[i], device=lg.device)
                v = lg[rows, tgt[rows]] - lg[rows, dis[rows]]
            else:
                v = torch.log_softmax(lg[rows], -1).gather(1, tgt[rows, None]).squeeze(1)
            vals.append(v.mean())
        return torch.stack(vals).cpu()

    def accuracy(self, logits: Sequence[torch.Tensor]) -> float:
        """Share of counted positions where the target beats the distractor (or is the argmax)."""
        if self.targets is None:
            raise ValueError(f"task {self.name!r} has no targets, so accuracy is undefined")
        hits, total = 0, 0
        for i, lg in enumerate(logits):
            for j, t in enumerate(self.targets[i]):
                if t < 0:
                    continue
                total += 1
                if self.distractors is not None:
                    hits += bool(lg[j, t] > lg[j, self.distractors[i][j]])
                else:
                    hits += bool(lg[j].argmax() == t)
        return hits / total


def _tokenizer_of(model_or_tokenizer):
    """The tokenizer of a loaded model, or the tokenizer itself; anything else (a model
    name, a Task, None) refused in words rather than an AttributeError deep inside."""
    tok = getattr(model_or_tokenizer, "tokenizer", None)
    tok = tok if tok is not None else model_or_tokenizer
    if not (callable(getattr(tok, "encode", None)) and callable(getattr(tok, "get_vocab", None))):
        hint = (f" (a model name: load it first, load_model({model_or_tokenizer!r}))"
                if isinstance(model_or_tokenizer, str) else "")
        raise TypeError(f"expected a loaded model (load_model(...)) or its tokenizer as the first argument, got "
                        f"{type(model_or_tokenizer).__name__}{hint}")
    return tok


def uses_bos(model_or_tokenizer, prepend_bos: Optional[bool]) -> bool:
    """Whether prompts start with BOS: ``prepend_bos`` when given, else the model's default."""
    if prepend_bos is not None:
        if not isinstance(prepend_bos, bool):
            raise TypeError(f"prepend_bos must be True, False or None (the model's default), got {prepend_bos!r}")
        return prepend_bos
    cfg = getattr(model_or_tokenizer, "cfg", None)
    return bool(getattr(cfg, "default_prepend_bos", True))


def _encode(tok, text: str, bos: bool) -> list[int]:
    ids = tok.encode(text, add_special_tokens=False)
    if bos:
        if tok.bos_token_id is None:
            raise ValueError("prepend_bos=True but the tokenizer has no BOS token; pass prepend_bos=False")
        ids = [tok.bos_token_id] + ids
    return ids


def _single_token(tok, word: str) -> Optional[int]:
    """The id of `` word`` if it is exactly one known token, else None."""
    for text in (" " + word, word):
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) == 1 and ids[0] != tok.unk_token_id:
            return ids[0]
    return None


def _known(tok, word: str) -> bool:
    ids = tok.encode(" " + word, add_special_tokens=False)
    return tok.unk_token_id is None or tok.unk_token_id not in ids


@renamed(seed="prompt_seed")
def ioi_task(
    model_or_tokenizer,
    n_prompts: int = 64,
    prompt_seed: int = 0,
    names: Sequence[str] = IOI_NAMES,
    places: Sequence[str] = IOI_PLACES,
    objects: Sequence[str] = IOI_OBJECTS,
    templates: Sequence[str] = IOI_TEMPLATES,
    prepend_bos: Optional[bool] = None,
) -> Task:
    """Indirect-object-identification prompts for any tokenizer.

    Template (method.md §6): ``When {IO} and {S} went to the {place}, {S} gave a
    {object} to`` -> `` {IO}``, plus its mirror with S first. Names that are not a
    single token of this tokenizer are dropped with a warning; so are places and
    objects the tokenizer cannot spell. The metric is logit(IO) - logit(S) at the
    last position; accuracy is the share of prompts where it is positive.
    """
    n_prompts = check_count(n_prompts, "n_prompts")
    prompt_seed = check_count(prompt_seed, "prompt_seed", 0)
    names, places, objects = _strings(names, "names"), _strings(places, "places"), _strings(objects, "objects")
    templates = _ioi_templates(templates)
    tok = _tokenizer_of(model_or_tokenizer)
    bos = uses_bos(model_or_tokenizer, prepend_bos)
    name_ids = {}
    dropped = []
    for n in names:
        i = _single_token(tok, n)
        (dropped.append(n) if i is None else name_ids.setdefault(n, i))
    if len(name_ids) < 2:
        raise ValueError(f"IOI needs at least two names that are single tokens of this tokenizer, got "
                         f"{len(name_ids)}{f' (not single tokens: {dropped[:8]})' if dropped else ''}; "
                         "pass names= with words in its vocabulary")
    if dropped:
        warnings.warn(f"IOI: dropped {len(dropped)} names that are not a single token: {', '.join(dropped)}")
    for what, given in (("places", places), ("objects", objects)):
        if not any(_known(tok, w) for w in given):
            raise ValueError(f"none of the {what} {given[:8]} can be spelled by this tokenizer; "
                             f"pass {what}=[...] with words in its vocabulary")
    places = [p for p in places if _known(tok, p)]
    objects = [o for o in objects if _known(tok, o)]
    rng = random.Random(prompt_seed)
    abc_rng = random.Random(f"abc-{prompt_seed}")  # its own stream: the clean prompts stay as they were
    pool = sorted(name_ids)
    prompts, texts, targets, distractors, corrupted = [], [], [], [], []
    for k in range(n_prompts):
        io, s = rng.sample(pool, 2)
        template = templates[k % len(templates)]
        place, obj = rng.choice(places), rng.choice(objects)
        text = template.format(IO=io, S=s, place=place, object=obj)
        ids = _encode(tok, text, bos)
        if tok.unk_token_id is not None and tok.unk_token_id in ids:
            raise ValueError(f"the tokenizer cannot spell the template text {text!r} (unknown token); "
                             "pass templates= written in its vocabulary")
        prompts.append(ids)
        texts.append(text)
        targets.append([name_ids[io]])
        distractors.append([name_ids[s]])
        if len(pool) >= 3:  # the ABC corruption needs three names; with two there is none
            corrupted.append(_encode(tok, _abc_text(template, place, obj, pool, (io, s), abc_rng), bos))
    return Task("ioi", prompts, "last", targets, distractors, texts,
                tokenizer_fingerprint(tok), {"prompt_seed": prompt_seed, "names": pool, "templates": list(templates),
                                             "places": places, "objects": objects, "prepend_bos": bos,
                                             "corrupted": "ABC: the three name slots hold three other names"},
                corrupted=corrupted or None)


def ioi_rewordings(model_or_tokenizer, task: Task, templates: Sequence[str] = IOI_HELDOUT_TEMPLATES,
                   n_prompts: Optional[int] = None) -> dict:
    """One IOI task per template in ``templates`` (default: the held-out rewordings),
    with the names, places, objects, prompt seed and BOS handling of ``task`` (an
    :func:`ioi_task`): ``{"held-out 1": Task, ...}`` (numbered as in ``templates``; each
    task's ``info["templates"]`` says its wording), for stability checks
    (:func:`coax_nb.robustness`'s ``held_out``)."""
    info = task.info if isinstance(task, Task) else {}
    if "templates" not in info or "places" not in info:
        raise ValueError("rewordings need an IOI task built by ioi_task (or an organism's task_for), which records "
                         "its names, places and objects; got " + (f"task {task.name!r}" if isinstance(task, Task)
                                                                   else type(task).__name__))
    n = len(task) if n_prompts is None else check_count(n_prompts, "n_prompts")
    out = {}
    for i, template in enumerate(_ioi_templates(templates), 1):
        t = ioi_task(model_or_tokenizer, n, prompt_seed=info["prompt_seed"], names=info["names"],
                     places=info["places"], objects=info["objects"], templates=[template],
                     prepend_bos=info.get("prepend_bos"))
        t.info.update({k: v for k, v in task.info.items() if k not in t.info})
        out[f"held-out {i}"] = t
    return out


def _ioi_templates(templates) -> list[str]:
    """IOI templates, each with an {IO} slot and an {S} slot and no field but IO, S, place
    and object; a template missing one would silently give prompts without the name."""
    import string

    templates = _strings(templates, "templates")
    if not templates:
        raise ValueError("templates is empty; give at least one IOI template, e.g. "
                         "'When {IO} and {S} went to the {place}, {S} gave a {object} to'")
    for t in templates:
        fields = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
        unknown = sorted(fields - {"IO", "S", "place", "object"})
        missing = [f for f in ("IO", "S") if f not in fields]
        if unknown or missing:
            problem = (f"unknown field(s) {unknown}" if unknown else "") + (" and " if unknown and missing else "") \
                + (f"no {{{missing[0]}}} slot" if missing else "")
            raise ValueError(f"IOI template {t!r} has {problem}; a template uses {{IO}} (the answer), {{S}} (the "
                             "repeated subject) and optionally {place} and {object}")
    return templates


def _abc_text(template: str, place: str, obj: str, pool: list, avoid: tuple, rng: random.Random) -> str:
    """The "ABC" corruption of an IOI prompt: the IO slot and the two S slots hold three
    distinct names, other than the prompt's own where the pool allows, so no name repeats
    and no head can find the indirect object by it."""
    fresh = [n for n in pool if n not in avoid]
    a, b, c = rng.sample(fresh if len(fresh) >= 3 else pool, 3)
    first, rest = template.split("{S}", 1)
    return (first + b + rest.replace("{S}", c, 1)).format(IO=a, place=place, object=obj)


@renamed(seed="prompt_seed")
def induction_task(
    model_or_tokenizer,
    n_prompts: int = 32,
    half_length: int = 10,
    prompt_seed: int = 0,
    token_range: Optional[tuple[int, int]] = None,
    prepend_bos: Optional[bool] = None,
) -> Task:
    """Repeated random tokens ``[BOS] r r``; the metric is the mean log-probability of
    the repeated tokens (every prediction in the second half)."""
    n_prompts = check_count(n_prompts, "n_prompts")
    half_length = check_count(half_length, "half_length", 2)
    prompt_seed = check_count(prompt_seed, "prompt_seed", 0)
    tok = _tokenizer_of(model_or_tokenizer)
    bos = uses_bos(model_or_tokenizer, prepend_bos)
    if bos and tok.bos_token_id is None:
        raise ValueError("prepend_bos=True but the tokenizer has no BOS token; pass prepend_bos=False")
    special = set(getattr(tok, "all_special_ids", []) or [])
    lo, hi = _token_range(token_range, len(tok))
    candidates = [i for i in range(lo, hi) if i not in special]
    if len(candidates) < half_length:
        raise ValueError(f"token_range {lo}..{hi} has {len(candidates)} ordinary tokens, fewer than "
                         f"half_length={half_length}; widen the range or shorten half_length")
    g = torch.Generator().manual_seed(prompt_seed)
    g_corrupt = torch.Generator().manual_seed(prompt_seed + 1_000_003)  # its own stream: clean prompts unchanged
    prompts, targets, corrupted = [], [], []
    for _ in range(n_prompts):
        pick = torch.randperm(len(candidates), generator=g)[:half_length].tolist()
        r = [candidates[j] for j in pick]
        ids = ([tok.bos_token_id] if bos else []) + r + r
        # the first half redrawn: the second half no longer repeats anything
        other = [candidates[j] for j in torch.randperm(len(candidates), generator=g_corrupt)[:half_length].tolist()]
        corrupted.append(([tok.bos_token_id] if bos else []) + other + r)
        start = len(ids) - half_length  # first index of the second copy
        # output position j predicts token j+1; count predictions of the second copy
        tg = [ids[j + 1] if j + 1 >= start + 1 else -1 for j in range(len(ids) - 1)]
        prompts.append(ids)
        targets.append(tg)
    return Task("induction", prompts, "all", targets, None, None, tokenizer_fingerprint(tok),
                {"prompt_seed": prompt_seed, "half_length": half_length,
                 "corrupted": "the first half redrawn"}, corrupted=corrupted)


def _token_range(token_range, vocab: int) -> tuple[int, int]:
    """``(lo, hi)``: token ids lo..hi-1 of a vocabulary of ``vocab``; None is all of it."""
    if token_range is None:
        return 0, vocab
    ok = (isinstance(token_range, (tuple, list)) and len(token_range) == 2
          and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in token_range))
    if not ok:
        raise TypeError(f"token_range must be a pair of token ids (lo, hi), got {token_range!r}")
    lo, hi = int(token_range[0]), int(token_range[1])
    if not 0 <= lo < hi <= vocab:
        raise ValueError(f"token_range ({lo}, {hi}) must satisfy 0 <= lo < hi <= {vocab} (the tokenizer's "
                         "vocabulary size); ids outside it are no tokens of this model")
    return lo, hi


def custom_task(
    model_or_tokenizer,
    texts: Sequence[str],
    answers: Optional[Sequence[str]] = None,
    distractors: Optional[Sequence[str]] = None,
    position_mode: str = "last",
    metric_fn: Optional[Callable] = None,
    prepend_bos: Optional[bool] = None,
    name: str = "custom",
    corrupted_texts: Optional[Sequence[str]] = None,
) -> Task:
    """A task from your own prompt texts. ``answers``/``distractors`` (single tokens,
    read at the last position) give the logit-difference metric; ``answers`` alone give
    the answer's log-probability. ``corrupted_texts`` (one per prompt, the same number
    of tokens) are the paired corrupted prompts that ``ablation="resample"`` takes head
    outputs from, e.g. the prompt with its names replaced by other names."""
    texts = _strings(texts, "texts")
    if len(texts) == 0:
        raise ValueError("custom_task got an empty prompt list; give at least one prompt text")
    if distractors is not None and answers is None:
        raise ValueError("custom_task got distractors but no answers; the logit difference needs both: "
                         "pass answers=[...] as well, or leave distractors out")
    if metric_fn is not None and not callable(metric_fn):
        raise TypeError(f"metric_fn must be a function (logits, task) -> one number per prompt, got "
                        f"{type(metric_fn).__name__} {metric_fn!r}")
    tok = _tokenizer_of(model_or_tokenizer)
    bos = uses_bos(model_or_tokenizer, prepend_bos)
    prompts = []
    for i, t in enumerate(texts):
        if not t.strip():
            raise ValueError(f"texts[{i}] is empty; every prompt needs some text to predict from")
        ids = _encode(tok, t, bos)
        if tok.unk_token_id is not None and tok.unk_token_id in ids:
            words = _unknown_words(tok, t)
            raise ValueError(f"prompt {i} ({t!r}) has words this tokenizer does not know: {words}; they would all "
                             f"read as {tok.unk_token!r}. Rephrase the prompt with words in the model's vocabulary")
        prompts.append(ids)

    def one_token(word, what):
        i = _single_token(tok, word)
        if i is None:
            ids = tok.encode(" " + word, add_special_tokens=False)
            why = (f"unknown to this tokenizer (it reads as {tok.unk_token!r})"
                   if tok.unk_token_id is not None and tok.unk_token_id in ids
                   else f"split by this tokenizer into {len(ids)} tokens {tok.convert_ids_to_tokens(ids)}")
            raise ValueError(f"{what} {word!r} is {why}; the metric reads one token per {what}: "
                             "choose a word that is a single token")
        return i

    targets = dist = None
    if answers is not None:
        answers = _strings(answers, "answers")
        if len(answers) != len(texts):
            raise ValueError(f"{len(answers)} answers for {len(texts)} prompts; give one answer per prompt")
        if position_mode != "last":
            raise ValueError("answers are read at the last position; use position_mode='last'")
        targets = [[one_token(a, "answer")] for a in answers]
        if distractors is not None:
            distractors = _strings(distractors, "distractors")
            if len(distractors) != len(texts):
                raise ValueError(f"{len(distractors)} distractors for {len(texts)} prompts; "
                                 "give one distractor per prompt")
            dist = [[one_token(d, "distractor")] for d in distractors]
    corrupted = None
    if corrupted_texts is not None:
        corrupted_texts = _strings(corrupted_texts, "corrupted_texts")
        if len(corrupted_texts) != len(texts):
            raise ValueError(f"{len(corrupted_texts)} corrupted_texts for {len(texts)} prompts; give one "
                             "paired corrupted prompt per prompt")
        corrupted = [_encode(tok, t, bos) for t in corrupted_texts]
        for i, (c, p) in enumerate(zip(corrupted, prompts)):
            if len(c) != len(p):
                raise ValueError(f"corrupted_texts[{i}] ({corrupted_texts[i]!r}) is {len(c)} tokens but its prompt "
                                 f"is {len(p)}; resample ablation copies head outputs position by position, so "
                                 "each corrupted prompt must tokenize to the same length (swap words for words "
                                 "of the same token count)")
    return Task(name, prompts, position_mode, targets, dist, texts, tokenizer_fingerprint(tok),
                {}, metric_fn, corrupted)


def _strings(value, what: str) -> list[str]:
    """A list of strings; a bare string would otherwise be read one character per item."""
    if isinstance(value, str):
        raise TypeError(f"{what} must be a list of strings, got a single string {value[:40]!r}; "
                        f"wrap it in a list: {what}=[...]")
    if isinstance(value, (bytes, dict)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{what} must be a list of strings, got {type(value).__name__}")
    value = list(value)
    for i, x in enumerate(value):
        if not isinstance(x, str):
            raise TypeError(f"{what}[{i}] is a {type(x).__name__}, not a string; {what} takes text "
                            "(build a Task(prompts=...) directly for token ids)")
    return list(value)


def _unknown_words(tok, text: str) -> list[str]:
    """The pieces of ``text`` that the tokenizer reads as its unknown token."""
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [text[a:b] for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if i == tok.unk_token_id]
    except NotImplementedError:  # a slow tokenizer has no offsets: try word by word
        return [w for w in text.split() if tok.unk_token_id in tok.encode(" " + w, add_special_tokens=False)]


@renamed(seed="rng_seed")
def ioi_counterfactual(model_or_tokenizer, task: Task, rng_seed: int = 0, swap: str = "io") -> Task:
    """The same IOI prompts with one name replaced by another (lengths unchanged).

    ``swap="io"``: the indirect object becomes a new name, which is the new answer.
    ``swap="s"``: the repeated subject (both occurrences) becomes a new name, which is
    the new distractor; the answer stays. Heads that copy the answer move with the
    first; heads that suppress the repeated name move with the second.
    """
    if swap not in ("io", "s"):
        raise ValueError(f"swap must be 'io' or 's', got {swap!r}")
    rng_seed = check_count(rng_seed, "rng_seed", 0)
    tok = _tokenizer_of(model_or_tokenizer)
    if not isinstance(task, Task):
        raise TypeError(f"ioi_counterfactual takes the IOI Task to swap names in as its second argument, got "
                        f"{type(task).__name__}: ioi_counterfactual(model, ioi_task(model))")
    if task.texts is None or task.distractors is None or "names" not in task.info:
        raise ValueError("ioi_counterfactual needs an IOI task (texts, names and distractors)")
    fp = tokenizer_fingerprint(tok)
    if task.tokenizer_fingerprint and fp != task.tokenizer_fingerprint:
        raise ValueError(f"task {task.name!r} was tokenized with a different tokenizer than this one; its names "
                         "would be re-spelled wrongly. Pass the model the task was built from")
    names = task.info["names"]
    if len(names) < 3:
        raise ValueError(f"a name swap needs a third name besides the prompt's two, and the task has only "
                         f"{names}; build the task with more names=")
    rng = random.Random(rng_seed)
    bos = task.prompts[0][0] == tok.bos_token_id
    prompts, targets, distractors, texts = [], [], [], []
    for text, t, d in zip(task.texts, task.targets, task.distractors):
        io, s = tok.decode([t[0]]).strip(), tok.decode([d[0]]).strip()
        new = rng.choice([n for n in names if n not in (io, s)])
        old = io if swap == "io" else s
        cf = re.sub(rf"\b{re.escape(old)}\b", new, text)
        prompts.append(_encode(tok, cf, bos))
        texts.append(cf)
        targets.append([_single_token(tok, new)] if swap == "io" else list(t))
        distractors.append(list(d) if swap == "io" else [_single_token(tok, new)])
    return Task(f"ioi-counterfactual-{swap}", prompts, task.position_mode, targets, distractors,
                texts, task.tokenizer_fingerprint, dict(task.info, counterfactual_of=task.name, swap=swap))
