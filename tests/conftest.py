import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from coax_nb import load_model
from coax_nb.toy import build_toy_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("COAX_CACHE", None)  # a developer's disk cache must not answer for the code under test
if os.environ.get("COAX_EXPECT_INSTALLED"):  # .ci/release_check.sh: the tests must run against the wheel
    import coax_nb

    assert "site-packages" in coax_nb.__file__, f"testing the checkout, not the installed wheel: {coax_nb.__file__}"
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# ---------------------------------------------------------------- test tiers
# `pytest -m "not slow"` is the developer loop (under 5 minutes on 2 CPU cores); plain
# `pytest` (README, CI) runs everything. Slow means: executes notebooks, drives a browser,
# spawns a process or (re)trains a model. The slow tests are listed here, in one place,
# and marked at collection; a test may also carry @pytest.mark.slow itself.
SLOW_FILES = {
    "test_notebooks.py": "papermill and nbval runs of the notebooks, the coax-nb report command",
    "test_widget_modules.py": "each widget's ES module in Chromium",
    "test_widgets_jupyterlab.py": "JupyterLab and Chromium",
    "test_widget_pictures.py": "runs notebooks in a kernel (nbclient)",
    "test_course_notebooks.py": "executes the course's student editions (nbclient)",
    "test_course_site.py": "executes every lesson and tutorial for the site; Chromium",
}
SLOW_TESTS = {
    "test_distributed.py::test_sharded_scan_equals_single_process": "spawns gloo worker processes",
    "test_organisms.py::test_cli_main_job_prints_top_heads": "runs the CLI in a subprocess",
    "test_organisms.py::test_retraining_reproduces_the_card": "retrains an organism",
}
NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"  # collected by nbval
COURSE_DIR = Path(__file__).resolve().parent.parent / "course" / "instructor"  # collected by nbval


def pytest_collection_modifyitems(config, items):
    modules = {}
    for item in items:
        name = getattr(item, "originalname", item.name)
        if (item.path.name in SLOW_FILES or f"{item.path.name}::{name}" in SLOW_TESTS
                or NOTEBOOKS_DIR in item.path.parents or COURSE_DIR in item.path.parents):
            item.add_marker(pytest.mark.slow)
        if getattr(item, "module", None) is not None:
            modules[item.path.name] = item.module
    # a renamed test must not drop out of the slow tier unnoticed
    for key in SLOW_TESTS:
        file, name = key.split("::")
        if file in modules and not hasattr(modules[file], name):
            raise pytest.UsageError(f"tests/conftest.py SLOW_TESTS lists {key}, which no longer exists")


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory):
    """A 3-layer x 4-head GPT-2-architecture model with an IOI word vocabulary."""
    return build_toy_model(tmp_path_factory.mktemp("toy") / "m", n_layers=3, n_heads=4, d_model=32, seed=0)


@pytest.fixture(scope="session")
def toy_dir_b(tmp_path_factory):
    """A second shape: 2 layers x 6 heads, d_model 48, d_mlp 64."""
    return build_toy_model(tmp_path_factory.mktemp("toyb") / "m", n_layers=2, n_heads=6, d_model=48, d_mlp=64, seed=1)


@pytest.fixture(scope="session")
def no_mlp_toy_dir(tmp_path_factory):
    """2 layers x 4 heads with every MLP weight zero: with ln_final's scale held fixed,
    the logits are affine in the last layer's head outputs."""
    from transformers import GPT2LMHeadModel

    path = build_toy_model(tmp_path_factory.mktemp("nomlp") / "m", n_layers=2, n_heads=4, d_model=32, seed=7)
    hf = GPT2LMHeadModel.from_pretrained(path)
    with torch.no_grad():
        for block in hf.transformer.h:
            for p in block.mlp.parameters():
                p.zero_()
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def toy(toy_dir):
    return load_model(toy_dir, device="cpu")


@pytest.fixture(scope="session")
def toy64(toy_dir):
    return load_model(toy_dir, device="cpu", dtype="fp64")


def mixed_length_prompts(model, n=10, seed=0):
    """Random prompts of two lengths (BOS first)."""
    g = torch.Generator().manual_seed(seed)
    V = model.cfg.d_vocab
    out = []
    for i in range(n):
        length = 7 if i % 2 else 11
        out.append([0] + torch.randint(2, V, (length - 1,), generator=g).tolist())
    return out


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("COAX_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


def chromium_or_skip() -> str:
    """Debian's chromium; skip when absent, fail instead when COAX_REQUIRE_BROWSER=1."""
    path = os.environ.get("COAX_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("COAX_REQUIRE_BROWSER") == "1":
            pytest.fail("COAX_REQUIRE_BROWSER=1 but no chromium is installed (apt-get install chromium)")
        pytest.skip("no chromium installed; browser tests need Debian's chromium")
    return path


@pytest.fixture(scope="session")
def browser():
    path = chromium_or_skip()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("COAX_REQUIRE_BROWSER") == "1":
            pytest.fail("COAX_REQUIRE_BROWSER=1 but the playwright package is missing")
        pytest.skip("playwright is not installed")
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
    yield b
    b.close()
    pw.stop()


def js_fmt(v) -> str:
    """Python twin of widgets/common.js fmt(), to compare numbers shown in a page."""
    if v is None or v != v or v in (float("inf"), float("-inf")):
        return "–"
    a = abs(v)
    if float(v).is_integer() and a < 1e4:
        return str(int(v))
    if a != 0 and (a < 1e-3 or a >= 1e4):
        mant, exp = f"{v:.2e}".split("e")
        return f"{mant}e{int(exp):+d}"
    return f"{v:.4f}" if a < 1 else f"{v:.3f}"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(out), full_page=True)
    return out


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
