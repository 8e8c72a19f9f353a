"""Tasks: prompt sets with answers and a behaviour metric.

A :class:`Task` holds token-id prompts (BOS included), the output positions the
metric reads (``position_mode``), and per-prompt targets. Three builders:
:func:`ioi_task` (indirect object identification, any tokenizer),
:func:`induction_task` (repeated random tokens) and :func:`custom_task`; and
:func:`ioi_counterfactual`, the same IOI prompts with one name swapped.
"""
from __future__ import annotations

import hashlib
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


def output_positions(length: int, mode: str) -> list[int]:
    """Positions whose next-token prediction is read, for a prompt of ``length`` tokens."""
    if mode == "last":
        return [length - 1]
    if mode == "all":
        return list(range(length - 1))
    if mode == "full":
        return list(range(length))
    raise ValueError(f"position_mode must be one of {POSITION_MODES}, got {mode!r}")


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

    def __post_init__(self):
        if len(self.prompts) == 0:
            raise ValueError(f"task {self.name!r} has an empty prompt set; give at least one prompt")
        output_positions(2, self.position_mode)  # validates the mode
        self.prompts = [[int(t) for t in p] for p in self.prompts]
        for i, p in enumerate(self.prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} of task {self.name!r} is empty")
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
        pick = lambda rows: None if rows is None else [rows[i] for i in idx]  # noqa: E731
        return Task(
            name=name or self.name, prompts=pick(self.prompts), position_mode=self.position_mode,
            targets=pick(self.targets), distractors=pick(self.distractors), texts=pick(self.texts),
            tokenizer_fingerprint=self.tokenizer_fingerprint, info=dict(self.info), metric_fn=self.metric_fn,
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
        vals = []
        for i, lg in enumerate(logits):
            lg = lg.double()
            tgt = torch.tensor(self.targets[i], device=lg.device)
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
    tok = getattr(model_or_tokenizer, "tokenizer", None)
    return tok if tok is not None else model_or_tokenizer


def _prepend_bos(model_or_tokenizer, prepend_bos: Optional[bool]) -> bool:
    if prepend_bos is not None:
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
    tok = _tokenizer_of(model_or_tokenizer)
    bos = _prepend_bos(model_or_tokenizer, prepend_bos)
    name_ids = {}
    dropped = []
    for n in names:
        i = _single_token(tok, n)
        (dropped.append(n) if i is None else name_ids.setdefault(n, i))
    if dropped:
        warnings.warn(f"IOI: dropped {len(dropped)} names that are not a single token: {', '.join(dropped)}")
    if len(name_ids) < 2:
        raise ValueError("IOI needs at least two names that are single tokens of this tokenizer; "
                         "pass names= with words in its vocabulary")
    places = [p for p in places if _known(tok, p)]
    objects = [o for o in objects if _known(tok, o)]
    if not places or not objects:
        raise ValueError("none of the places/objects can be spelled by this tokenizer; pass places=/objects=")
    rng = random.Random(prompt_seed)
    pool = sorted(name_ids)
    prompts, texts, targets, distractors = [], [], [], []
    for k in range(n_prompts):
        io, s = rng.sample(pool, 2)
        template = templates[k % len(templates)]
        text = template.format(IO=io, S=s, place=rng.choice(places), object=rng.choice(objects))
        ids = _encode(tok, text, bos)
        if tok.unk_token_id is not None and tok.unk_token_id in ids:
            raise ValueError(f"the tokenizer cannot spell the template text {text!r} (unknown token); "
                             "pass templates= written in its vocabulary")
        prompts.append(ids)
        texts.append(text)
        targets.append([name_ids[io]])
        distractors.append([name_ids[s]])
    return Task("ioi", prompts, "last", targets, distractors, texts,
                tokenizer_fingerprint(tok), {"prompt_seed": prompt_seed, "names": pool, "templates": list(templates)})


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
    tok = _tokenizer_of(model_or_tokenizer)
    bos = _prepend_bos(model_or_tokenizer, prepend_bos)
    special = set(getattr(tok, "all_special_ids", []) or [])
    lo, hi = token_range or (0, len(tok))
    candidates = [i for i in range(lo, hi) if i not in special]
    if len(candidates) < half_length:
        raise ValueError(f"token_range {lo}..{hi} has fewer than {half_length} ordinary tokens")
    g = torch.Generator().manual_seed(prompt_seed)
    prompts, targets = [], []
    for _ in range(n_prompts):
        pick = torch.randperm(len(candidates), generator=g)[:half_length].tolist()
        r = [candidates[j] for j in pick]
        ids = ([tok.bos_token_id] if bos else []) + r + r
        start = len(ids) - half_length  # first index of the second copy
        # output position j predicts token j+1; count predictions of the second copy
        tg = [ids[j + 1] if j + 1 >= start + 1 else -1 for j in range(len(ids) - 1)]
        prompts.append(ids)
        targets.append(tg)
    return Task("induction", prompts, "all", targets, None, None, tokenizer_fingerprint(tok),
                {"prompt_seed": prompt_seed, "half_length": half_length})


def custom_task(
    model_or_tokenizer,
    texts: Sequence[str],
    answers: Optional[Sequence[str]] = None,
    distractors: Optional[Sequence[str]] = None,
    position_mode: str = "last",
    metric_fn: Optional[Callable] = None,
    prepend_bos: Optional[bool] = None,
    name: str = "custom",
) -> Task:
    """A task from your own prompt texts. ``answers``/``distractors`` (single tokens,
    read at the last position) give the logit-difference metric; ``answers`` alone give
    the answer's log-probability."""
    texts = _strings(texts, "texts")
    if len(texts) == 0:
        raise ValueError("custom_task got an empty prompt list; give at least one prompt text")
    if distractors is not None and answers is None:
        raise ValueError("custom_task got distractors but no answers; the logit difference needs both: "
                         "pass answers=[...] as well, or leave distractors out")
    tok = _tokenizer_of(model_or_tokenizer)
    bos = _prepend_bos(model_or_tokenizer, prepend_bos)
    prompts = []
    for i, t in enumerate(texts):
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
    return Task(name, prompts, position_mode, targets, dist, texts, tokenizer_fingerprint(tok),
                {}, metric_fn)


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
    tok = _tokenizer_of(model_or_tokenizer)
    if task.texts is None or task.distractors is None or "names" not in task.info:
        raise ValueError("ioi_counterfactual needs an IOI task (texts, names and distractors)")
    rng = random.Random(rng_seed)
    names = task.info["names"]
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
