"""Direct logit attribution and the DLA ground-truth criterion."""
import numpy as np
import torch

from coax_nb import Engine, dla_ground_truth, head_dla, load_model
from coax_nb.organisms import task_for
from coax_nb.tasks import ioi_task


def test_dla_equals_exact_effect_of_a_last_layer_head_with_scale_frozen(no_mlp_toy_dir):
    """No MLPs and ln_final's scale held at its clean value: removing a last-layer head
    changes the metric by exactly its DLA."""
    model = load_model(no_mlp_toy_dir, device="cpu", dtype="fp64")
    task = ioi_task(model, 8, seed=4)
    engine = Engine(model, task, progress=False)
    dla = head_dla(engine)
    clean = task.metric(engine.clean_logits()).mean().item()
    toks = engine.buckets[0].tokens
    last, H = engine.n_layers - 1, engine.n_heads
    saved = {}
    with torch.no_grad(), model.hooks(fwd_hooks=[("ln_final.hook_scale", lambda x, hook: saved.setdefault("s", x))]):
        model(toks)
    for h in range(H):
        def drop(z, hook, h=h):
            z = z.clone()
            z[:, :, h] = 0
            return z
        hooks = [("ln_final.hook_scale", lambda x, hook: saved["s"]), (f"blocks.{last}.attn.hook_z", drop)]
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            ablated = task.metric(list(model(toks)[:, -1:])).mean().item()
        assert abs(clean - ablated) > 1e-3  # not vacuous
        assert abs(dla[last * H + h] - (clean - ablated)) < 1e-10


def test_dla_ground_truth_on_the_handwired_organism():
    model = load_model("organism:handwired")
    engine = Engine(model, task_for("organism:handwired", 32), progress=False)
    gt = dla_ground_truth(engine, n_primaries=2)
    assert sorted(map(str, gt["primaries"])) == ["L1H0", "L1H1"]
    assert sorted(map(str, gt["backups"])) == ["L2H0", "L2H1"]
    assert np.all(np.abs(gt["clean_dla"][[8, 9]]) < 1e-3)  # dormant on the intact model
    assert gt["ablated_dla"][8] > 1.5 and gt["ablated_dla"][9] > 1.5
