#!/usr/bin/env bash
# Sets up the OpenMMLab stack for evad_mm in a virtual environment.
#
#   tools/install.sh            # creates ./.venv unless it exists, installs everything
#
# Environment:
#   VENV            where the virtual environment lives (default: <repo>/.venv)
#   PYTHON          interpreter used to create it (default: python3.11)
#   EVAD_MM_CACHE   wheel cache outside the repo (default: ~/.cache/evad_mm)
#
# mmcv 2.1.0 has no wheel on PyPI for current torch releases, so it is built from
# its sdist (compiled CPU ops; CUDA ops too when a CUDA toolkit and device exist).
# torch >= 2.14 headers need C++20 while mmcv's setup.py asks for C++17: the build
# patches that one flag. The built wheel is cached keyed by mmcv version, torch
# version, python tag and platform, so a torch change forces a rebuild.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
CACHE="${EVAD_MM_CACHE:-$HOME/.cache/evad_mm}"
MMCV_VERSION=2.1.0
TORCH_DEFAULT=2.14.1
TORCHVISION_DEFAULT=0.29.1

say() { printf '[evad_mm install] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check --no-input)

# 1. torch / torchvision: keep a pair that already imports, else install the verified pair.
if "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
    say "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    say "installing torch==$TORCH_DEFAULT torchvision==$TORCHVISION_DEFAULT"
    "${PIP[@]}" install "torch==$TORCH_DEFAULT" "torchvision==$TORCHVISION_DEFAULT" "setuptools==80.10.2"
fi
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)')"
TORCHVISION_VERSION="$("$PY" -c 'import torchvision; print(torchvision.__version__)')"

# Every later pip call gets this constraints file, so nothing can swap torch.
CONSTRAINTS="$VENV/evad_mm-constraints.txt"
{
    # Without the local label (+cu130): `==2.14.1` matches the installed build
    # while an exact `==2.14.1+cu130` makes pip's resolver fail on torch>=X.
    echo "torch==${TORCH_VERSION%%+*}"
    echo "torchvision==${TORCHVISION_VERSION%%+*}"
    grep -v '^#' "$ROOT/requirements/constraints.txt"
} > "$CONSTRAINTS"
"${PIP[@]}" install -q -c "$CONSTRAINTS" setuptools wheel ninja packaging

# 2. mmcv with compiled ops, from the cache or built once.
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
PLATFORM="$("$PY" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_"))')"
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION/torch-$TORCH_VERSION/$PY_TAG-$PLATFORM"
STAMP="$VENV/.mmcv-built-against-torch"

mmcv_ops_work() {
    "$PY" - <<'PYEOF' >/dev/null 2>&1
import torch
from mmcv.ops import RoIAlign
feat = torch.rand(1, 2, 8, 8, requires_grad=True)
rois = torch.tensor([[0., 1., 1., 6., 6.]])
RoIAlign((2, 2), 1.0, 2, aligned=True)(feat, rois).sum().backward()
assert feat.grad is not None
PYEOF
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$TORCH_VERSION" ] && mmcv_ops_work; then
    say "mmcv $MMCV_VERSION with compiled ops already installed (torch $TORCH_VERSION)"
else
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
        say "no cached mmcv wheel for torch $TORCH_VERSION / $PY_TAG / $PLATFORM"
        say "building mmcv $MMCV_VERSION from source: this takes about 15 minutes on 2 cores (once per torch version)"
        BUILD="$(mktemp -d)"
        "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD"
        tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
        SRC="$BUILD/mmcv-$MMCV_VERSION"
        # torch >= 2.14 headers: "#error C++20 or later compatible compiler is required".
        sed -i "s/'-std=c++17'/'-std=c++20'/g" "$SRC/setup.py"
        mkdir -p "$WHEEL_DIR.tmp"
        (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "${PIP[@]}" wheel --no-deps --no-build-isolation --no-cache-dir \
            -c "$CONSTRAINTS" -w "$WHEEL_DIR.tmp" .)
        rm -rf "$WHEEL_DIR" && mkdir -p "$(dirname "$WHEEL_DIR")" && mv "$WHEEL_DIR.tmp" "$WHEEL_DIR"
        rm -rf "$BUILD"
        say "cached $(ls "$WHEEL_DIR"/mmcv-*.whl)"
    else
        say "using cached $(ls "$WHEEL_DIR"/mmcv-*.whl)"
    fi
    "${PIP[@]}" install -q --force-reinstall --no-deps "$WHEEL_DIR"/mmcv-*.whl
    echo "$TORCH_VERSION" > "$STAMP"
fi

# 3. The rest of the stack and evad_mm itself.
say "installing mmengine, mmdet, mmaction2, timm, decord and test tools"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install -q --no-deps -c "$CONSTRAINTS" openmim==0.3.9
"${PIP[@]}" install -q -c "$CONSTRAINTS" -e "$ROOT"

# 4. Smoke test: torch unchanged, compiled ops run, the stack imports with evad_mm.
"$PY" - <<PYEOF
import torch
assert torch.__version__ == "$TORCH_VERSION", f"torch changed to {torch.__version__}"
import evad_mm  # applies the compatibility shims
import mmaction.models, mmdet.models  # noqa: F401
from mmcv.ops import RoIAlign
feat = torch.rand(1, 2, 8, 8, requires_grad=True)
RoIAlign((2, 2), 1.0, 2, aligned=True)(feat, torch.tensor([[0., 1., 1., 6., 6.]])).sum().backward()
print('[evad_mm install] ok: torch', torch.__version__, '| mmcv ops run on CPU | evad_mm', evad_mm.__version__)
PYEOF
