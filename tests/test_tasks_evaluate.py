import itertools
import warnings

import numpy as np
import pytest

from coax_nb import Engine, average_precision, custom_task, induction_task, ioi_task, precision_at_k, roc_auc
from coax_nb.toy import build_toy_model, ioi_vocabulary
from coax_nb import load_model


def test_ioi_task_word_tokenizer(toy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = ioi_task(toy, 20, prompt_seed=3)
    assert len(t) == 20 and t.position_mode == "last"
    tok = toy.tokenizer
    for ids, text, a, d in zip(t.prompts, t.texts, t.answers, t.distractors):
        assert ids.count(a) == 1 and ids.count(d[0]) == 2 and ids[0] == tok.bos_token_id
        assert tok.convert_ids_to_tokens(a) in text.split()
    assert ioi_task(toy, 20, prompt_seed=3).prompts == t.prompts  # seedable
    assert ioi_task(toy, 20, prompt_seed=4).prompts != t.prompts


def test_ioi_drops_names_that_are_not_one_token(tmp_path):
    words = [w for w in ioi_vocabulary() if w not in ("Mary", "John")]
    m = load_model(build_toy_model(tmp_path / "m", n_layers=1, n_heads=2, d_model=8, words=words), device="cpu")
    with pytest.warns(UserWarning, match="dropped 2 names.*Mary.*John|dropped 2 names.*John"):
        t = ioi_task(m, 10)
    assert all("Mary" not in x and "John" not in x for x in t.texts)


def test_logit_difference_and_accuracy(toy):
    t = ioi_task(toy, 8)
    e = Engine(toy, t, progress=False)
    logits = e.clean_logits()
    ld = t.metric(logits)
    for i, lg in enumerate(logits):
        assert ld[i].item() == pytest.approx((lg[0, t.answers[i]] - lg[0, t.distractors[i][0]]).item(), rel=1e-6)
    assert t.accuracy(logits) == pytest.approx(float((ld > 0).float().mean()))


def test_induction_task(toy):
    t = induction_task(toy, 4, half_length=6, prompt_seed=1)
    for ids, tg in zip(t.prompts, t.targets):
        assert ids[1:7] == ids[7:13] and len(tg) == len(ids) - 1
        counted = [j for j, x in enumerate(tg) if x >= 0]
        assert counted == list(range(7, 12)) and all(tg[j] == ids[j + 1] for j in counted)
    e = Engine(toy, t, progress=False)
    assert e.position_mode == "all"
    assert np.isfinite(t.metric(e.clean_logits()).numpy()).all()


def test_custom_task(toy):
    t = custom_task(toy, ["When Mary and John went", "When Tom and Sam went to the store ,"], answers=["to", "Sam"])
    assert len({len(p) for p in t.prompts}) == 2
    with pytest.raises(ValueError, match="single token"):
        custom_task(toy, ["When Mary"], answers=["Zorblax"])
    with pytest.raises(ValueError, match="empty"):
        custom_task(toy, [])


def brute_auc(s, y):
    pos = [a for a, l in zip(s, y) if l]
    neg = [a for a, l in zip(s, y) if not l]
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])


def test_ranking_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 5, 15).astype(float)
        y = rng.random(15) < 0.3
        if y.sum() in (0, 15):
            continue
        assert roc_auc(s, y) == pytest.approx(brute_auc(s, y))
    s = np.array([0.9, 0.8, 0.7, 0.1])
    y = np.array([True, False, True, False])
    assert average_precision(s, y) == pytest.approx((1 + 2 / 3) / 2)
    assert precision_at_k(s, y, 2) == 0.5
    assert roc_auc(s, y) == 0.75


def test_old_seed_keyword_is_a_deprecated_alias(toy):
    with pytest.warns(DeprecationWarning, match="prompt_seed"):
        old = ioi_task(toy, 6, seed=2)
    assert old.prompts == ioi_task(toy, 6, prompt_seed=2).prompts
    with pytest.warns(DeprecationWarning, match="prompt_seed"):
        old = induction_task(toy, 3, seed=2)
    assert old.prompts == induction_task(toy, 3, prompt_seed=2).prompts
    with pytest.raises(TypeError, match="both"):
        ioi_task(toy, 6, seed=1, prompt_seed=2)


def test_tokenizer_fingerprint_lives_with_the_tasks(toy):
    from coax_nb.tasks import tokenizer_fingerprint

    fp = tokenizer_fingerprint(toy.tokenizer)
    assert len(fp) == 16 and ioi_task(toy, 2).tokenizer_fingerprint == fp
    assert tokenizer_fingerprint(None) is None


@pytest.mark.parametrize("swap", ["io", "s"])
def test_ioi_counterfactual(toy, swap):
    from coax_nb.tasks import ioi_counterfactual

    t = ioi_task(toy, 12, prompt_seed=5)
    cf = ioi_counterfactual(toy, t, rng_seed=1, swap=swap)
    assert [len(p) for p in cf.prompts] == [len(p) for p in t.prompts]
    tok = toy.tokenizer
    for text, new, a, d in zip(t.texts, cf.texts, t.targets, t.distractors):
        io, s = tok.decode(a).strip(), tok.decode(d).strip()
        changed = {x for x in set(text.split()) - set(new.split())}
        assert changed == ({io} if swap == "io" else {s})
    if swap == "io":
        assert cf.distractors == t.distractors and all(x != y for x, y in zip(cf.answers, t.answers))
    else:
        assert cf.targets == t.targets and all(x != y for x, y in zip(cf.distractors, t.distractors))
    with pytest.warns(DeprecationWarning, match="rng_seed"):
        assert ioi_counterfactual(toy, t, seed=1, swap=swap).prompts == cf.prompts
    with pytest.raises(ValueError, match="swap"):
        ioi_counterfactual(toy, t, swap="x")
