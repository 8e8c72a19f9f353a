#!/usr/bin/env bash
# Release check: the wheel and the sdist build; the wheel, installed with its test extra
# into a fresh venv at the dependency floors pyproject declares for transformers and
# TransformerLens (torch: the 2.13.0 CPU wheel, the only one these machines have), passes
# the fast tests run against the installed copy, not the checkout; the sdist installs and
# runs the command. Usage: bash .ci/release_check.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
mkdir -p "$work"
python3 -m pip install -q build
python3 -m build --outdir "$work/dist" . >/dev/null
ls -l "$work/dist"
wheel=$(ls "$work"/dist/coax_nb-*.whl)
sdist=$(ls "$work"/dist/coax_nb-*.tar.gz)
# the wheel ships the widgets' bundles, the organisms, the report notebook and py.typed
python3 - "$wheel" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["coax_nb/py.typed", "coax_nb/report.ipynb", "coax_nb/widgets/static/headmap.js",
        "coax_nb/widgets/static/synergy.css", "coax_nb/organisms/ioi_dormant/card.json",
        "coax_nb/organisms/ioi_dormant/model.safetensors", "coax_nb/__main__.py",
        "coax_nb/course/lessons/01_fisher_energy.py"]
missing = [n for n in need if n not in names]
assert not missing, f"the wheel lacks {missing}"
assert any(n.endswith("LICENSE") for n in names), "the wheel lacks the LICENSE"
print(f"wheel: {len(names)} files, all required ones present")
PY
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q torch==2.13.0
"$work/venv/bin/pip" install -q "${wheel}[test]" "transformers==5.9.0" "transformer-lens==4.2.0"
(cd "$work" && "$work/venv/bin/python" - <<'PY'
from importlib.metadata import version
import coax_nb
assert "site-packages" in coax_nb.__file__, coax_nb.__file__
print("installed:", coax_nb.__file__, "| torch", version("torch"), "| transformers", version("transformers"),
      "| transformer-lens", version("transformer-lens"))
PY
)
# the fast tests, importing the installed wheel (COAX_EXPECT_INSTALLED makes conftest check it)
COAX_EXPECT_INSTALLED=1 HF_HUB_OFFLINE=1 "$work/venv/bin/pytest" -q -m "not slow" -p no:cacheprovider -x tests
# the sdist installs on its own and runs the command
python3 -m venv --system-site-packages "$work/venv-sdist"
"$work/venv-sdist/bin/pip" install -q --no-deps "$sdist"
(cd "$work" && "$work/venv-sdist/bin/python" -m coax_nb --version && \
  "$work/venv-sdist/bin/coax-nb" scan --model organism:handwired --primaries L1H0 L1H1 --prompts 8 | tail -3)
echo "release check passed"
