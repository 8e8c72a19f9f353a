"""load_model's forms (organism, folder, hub name with revision, loaded HF model), the
errors it turns failures into, and provenance. Nothing reaches the network: hub names are
served from a hand-built HF cache, an in-process mock hub or HF_HUB_OFFLINE."""
import hashlib
import shutil

import pytest
import torch

from coax_nb import Engine, ModelLoadError, load_model, models
from coax_nb.toy import build_toy_model

TOKENS = torch.tensor([[0, 5, 6, 7], [0, 9, 3, 5]])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_toy_model(tmp_path_factory.mktemp("models") / "m", n_layers=1, n_heads=2, d_model=16, rng_seed=0)


@pytest.fixture(scope="module")
def ref64(folder):
    return load_model(folder, device="cpu", dtype="fp64")


def _hf(folder, dtype=torch.float32):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype), AutoTokenizer.from_pretrained(folder)


# ------------------------------------------------------------ a loaded HF model


def test_loaded_model_is_wrapped_without_reloading(folder, ref64):
    hf, tok = _hf(folder)  # fp32, cast in place to fp64 below
    bridge = load_model(hf, tokenizer=tok, dtype="fp64")
    assert bridge.original_model is hf
    assert next(hf.parameters()).dtype == torch.float64
    with torch.no_grad():
        logits = bridge(TOKENS)
        assert logits.dtype == torch.float64
        assert torch.equal(logits, ref64(TOKENS))
        assert torch.allclose(logits, hf(TOKENS).logits, rtol=0, atol=1e-12)
    engine = Engine(bridge, [[0, 5, 6, 7]], progress=False)
    ref_engine = Engine(ref64, [[0, 5, 6, 7]], progress=False)
    (got,), (want,) = engine.clean_logits(), ref_engine.clean_logits()
    assert got.dtype == torch.float64 and torch.equal(got, want)
    assert torch.allclose(got, logits[0, -1], rtol=0, atol=1e-12)
    assert bridge.coax_loaded == {"revision": None, "commit": None, "trust_remote_code": False, "preloaded": True}
    prov = models.provenance(bridge.coax_source, bridge)
    assert prov["preloaded"] and prov["weights_sha256"] is None  # in-memory weights need not match any file


def test_loaded_model_keeps_its_dtype_and_device(folder):
    hf, tok = _hf(folder, torch.float64)
    bridge = load_model(hf, tokenizer=tok)
    assert bridge.cfg.dtype == torch.float64 and next(hf.parameters()).dtype == torch.float64
    assert {p.device.type for p in bridge.parameters()} == {"cpu"}


def test_loaded_model_of_the_wrong_kind_is_refused(folder, ref64, tmp_path):
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertForMaskedLM

    from coax_nb.toy import word_tokenizer

    hf, tok = _hf(folder)
    with pytest.raises(ModelLoadError, match=r"needs its tokenizer.*tokenizer=AutoTokenizer"):
        load_model(hf)
    with pytest.raises(TypeError, match="transformers tokenizer"):
        load_model(hf, tokenizer="gpt2")
    in_memory = word_tokenizer([f"w{i}" for i in range(59)])
    with pytest.raises(ModelLoadError, match=r"built in memory.*save_pretrained\(dir\).*from_pretrained\(dir\)"):
        load_model(hf, tokenizer=in_memory)
    in_memory.save_pretrained(tmp_path / "big_tok")
    with pytest.raises(ModelLoadError, match=r"has 61 tokens but .* embeds only 58"):
        load_model(hf, tokenizer=AutoTokenizer.from_pretrained(tmp_path / "big_tok"))
    with pytest.raises(ModelLoadError, match="no language-model head.*AutoModelForCausalLM"):
        load_model(AutoModel.from_pretrained(folder), tokenizer=tok)
    bert = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ModelLoadError, match="encoder-only"):
        load_model(bert, tokenizer=tok)
    with pytest.raises(TypeError, match="already a TransformerBridge"):
        load_model(ref64)
    with pytest.raises(TypeError, match="not a dict"):
        load_model({"weights": 1})
    with pytest.raises(ValueError, match="from_pretrained"):
        load_model(hf, tokenizer=tok, device_map="auto")
    with pytest.raises(ValueError, match="already loaded"):
        load_model(hf, tokenizer=tok, revision="main")
    with pytest.raises(ValueError, match="CUDA"):
        load_model(hf, tokenizer=tok, dtype="bf16")
    assert next(hf.parameters()).dtype == torch.float32  # nothing was changed by the refused calls


def test_model_built_in_memory(folder):
    """A model made with from_config (its config names no architecture) is wrapped by its
    class; one the bridge cannot build is refused with TransformerLens named."""
    from transformers import AutoConfig, AutoModelForCausalLM

    _, tok = _hf(folder)
    torch.manual_seed(0)
    gpt2 = AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", vocab_size=len(tok), n_embd=16, n_layer=1,
                                                                 n_head=2), dtype=torch.float64).eval()
    assert gpt2.config.architectures is None
    with torch.no_grad():
        assert torch.allclose(load_model(gpt2, tokenizer=tok)(TOKENS), gpt2(TOKENS).logits, rtol=0, atol=1e-12)
    falcon = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "falcon", vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        new_decoder_architecture=True, num_kv_heads=2))
    with pytest.raises(ModelLoadError, match=r"TransformerLens [\d.]+ cannot build this model \(FalconForCausalLM\)"):
        load_model(falcon, tokenizer=tok)


# ------------------------------------------------------------ hub names


def _fake_hub_cache(root, snapshots: dict, refs: dict):
    """An HF cache holding someone/tiny at the given commits (sha -> model folder)."""
    repo = root / "models--someone--tiny"
    for sha, src in snapshots.items():
        shutil.copytree(src, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    for ref, sha in refs.items():
        (repo / "refs" / ref).write_text(sha)
    return root


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE on, with an empty HF cache of its own."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_revision_is_loaded_and_recorded(folder, tmp_path, offline_cache, monkeypatch):
    from transformer_lens.model_bridge import TransformerBridge

    other = build_toy_model(tmp_path / "other", n_layers=1, n_heads=2, d_model=16, rng_seed=1)
    main_sha, v2_sha = "a" * 40, "b" * 40
    _fake_hub_cache(offline_cache, {main_sha: folder, v2_sha: other}, {"main": main_sha, "v2": v2_sha})
    calls = []
    boot = TransformerBridge.boot_transformers

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return boot(*args, **kwargs)

    monkeypatch.setattr(TransformerBridge, "boot_transformers", spy)
    with torch.no_grad():
        main = load_model("someone/tiny", device="cpu", dtype="fp64")
        v2 = load_model("someone/tiny", device="cpu", dtype="fp64", revision="v2")
        by_sha = load_model("someone/tiny", device="cpu", dtype="fp64", revision=v2_sha, trust_remote_code=True)
        assert torch.equal(main(TOKENS), load_model(folder, device="cpu", dtype="fp64")(TOKENS))
        assert torch.equal(v2(TOKENS), load_model(other, device="cpu", dtype="fp64")(TOKENS))
        assert torch.equal(by_sha(TOKENS), v2(TOKENS))
        assert not torch.allclose(main(TOKENS), v2(TOKENS))
    assert [(c["revision"], c["trust_remote_code"]) for c in calls[:3]] == [(None, False), ("v2", False),
                                                                            (v2_sha, True)]
    assert main.coax_loaded["commit"] == main_sha and v2.coax_loaded["commit"] == v2_sha
    prov = models.provenance("someone/tiny", v2)
    assert (prov["revision"], prov["commit"], prov["trust_remote_code"]) == ("v2", v2_sha, False)
    assert prov["weights_sha256"] is None
    assert models.provenance("someone/tiny", by_sha)["trust_remote_code"] is True
    assert models.provenance("someone/tiny")["commit"] == main_sha  # without the model: read from the cache
    with pytest.raises(ValueError, match="local folder; drop revision="):
        load_model(folder, revision="v2")


def test_uncached_hub_name_offline(offline_cache):
    with pytest.raises(ModelLoadError, match=r"'someone/nonexistent-model'.*HF_HUB_OFFLINE=1.*local HF-format "
                                             r"directory.*organism:handwired") as info:
        load_model("someone/nonexistent-model", device="cpu")
    from huggingface_hub.errors import LocalEntryNotFoundError

    assert any(isinstance(e, LocalEntryNotFoundError) for e in models.exception_chain(info.value))


@pytest.fixture
def mock_hub(tmp_path, monkeypatch):
    """Route huggingface_hub's HTTP client to an in-process hub answering every request
    with one status and X-Error-Code; online mode, an empty cache."""
    import huggingface_hub
    import huggingface_hub.constants
    from huggingface_hub.utils import httpx

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def answer(status, code):
        def handler(request):
            return httpx.Response(status, headers={"X-Error-Code": code}, request=request)
        huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(handler)))

    yield answer
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


@pytest.mark.parametrize("status, code, revision, error, message", [
    (401, "RepoNotFound", None, "RepositoryNotFoundError", r"neither a local folder nor a model repository.*check the "
                                                          r"name.*huggingface-cli login"),
    (403, "GatedRepo", None, "GatedRepoError", r"gated model: accept its terms at "
                                               r"https://huggingface.co/someone/x.*huggingface-cli login"),
    (404, "RevisionNotFound", "v9", "RevisionNotFoundError", r"has no revision 'v9'; name an existing branch"),
])
def test_hub_errors_name_the_fix(mock_hub, status, code, revision, error, message):
    mock_hub(status, code)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model("someone/x", device="cpu", revision=revision)
    assert error in [type(e).__name__ for e in models.exception_chain(info.value)]


def test_unreachable_hub(monkeypatch):
    """A connection failure, raised as transformers raises it (the retries take too long to
    go through them here)."""
    import huggingface_hub.constants
    from huggingface_hub.errors import LocalEntryNotFoundError
    from huggingface_hub.utils import httpx
    from transformer_lens.model_bridge import TransformerBridge

    def boot(*args, **kwargs):
        request = httpx.Request("HEAD", "https://huggingface.co/someone/x/resolve/main/config.json")
        try:
            try:
                raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)
            except httpx.ConnectError as e:
                raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub") from e
        except LocalEntryNotFoundError as e:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from e

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(TransformerBridge, "boot_transformers", boot)
    with pytest.raises(ModelLoadError, match="hub cannot be reached.*check the connection.*local HF-format"):
        load_model("someone/x", device="cpu")


# ------------------------------------------------------------ local folders


def test_model_path_errors(folder, ref64, tmp_path):
    with pytest.raises(ModelLoadError, match=r"is a file; load_model takes the folder.*load_model\("):
        load_model(folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(folder / "config.json")
    with pytest.raises(ModelLoadError, match="no model folder at"):
        load_model(str(tmp_path / "missing"))

    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(folder / f, no_tok / f)
    with pytest.raises(ModelLoadError, match=r"no tokenizer files.*tokenizer.save_pretrained\(dir\)"):
        load_model(no_tok)
    _, tok = _hf(folder)
    with torch.no_grad():  # ... and the tokenizer may come separately
        assert torch.equal(load_model(no_tok, tokenizer=tok, device="cpu", dtype="fp64")(TOKENS), ref64(TOKENS))

    no_weights = tmp_path / "no_weights"
    shutil.copytree(folder, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"config.json but no weights.*save_pretrained"):
        load_model(no_weights)


class Payload:
    """Not a tensor: torch's weights_only unpickler refuses it."""


def test_unsafe_pickle_weights(folder, ref64, tmp_path):
    from safetensors.torch import load_file

    tensors = load_file(folder / "model.safetensors")
    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    (plain / "model.safetensors").unlink()
    torch.save(tensors, plain / "pytorch_model.bin")
    with torch.no_grad():  # a tensors-only pickle loads
        assert torch.equal(load_model(plain, device="cpu", dtype="fp64")(TOKENS), ref64(TOKENS))

    unsafe = tmp_path / "unsafe"
    shutil.copytree(plain, unsafe)
    torch.save({**tensors, "extra": Payload()}, unsafe / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pickle that torch refuses.*weights_only.*safetensors") as info:
        load_model(unsafe, device="cpu")
    assert "pytorch_model.bin" in str(info.value)
    import pickle

    assert any(isinstance(e, pickle.UnpicklingError) for e in models.exception_chain(info.value))


# ------------------------------------------------------------ provenance


def test_weights_hash_streams_in_chunks(folder, tmp_path, monkeypatch):
    d = tmp_path / "w"
    d.mkdir()
    g = torch.Generator().manual_seed(0)
    big = torch.randint(0, 256, (int(2.5 * models.HASH_CHUNK),), generator=g, dtype=torch.uint8).numpy().tobytes()
    (d / "b.safetensors").write_bytes(big)
    (d / "a.safetensors").write_bytes(b"first")
    (d / "pytorch_model.bin").write_bytes(b"last")
    whole = hashlib.sha256(b"first" + big + b"last").hexdigest()
    assert models.weights_sha256(d) == whole
    monkeypatch.setattr(models, "HASH_CHUNK", 4096)  # many chunks, and a file smaller than one
    assert models.weights_sha256(d) == whole

    prov = models.provenance(str(folder))
    assert prov["weights_sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert (prov["revision"], prov["commit"], prov["trust_remote_code"], prov["preloaded"]) == (None, None, False,
                                                                                                False)
