#!/usr/bin/env bash
# Sets up the OpenMMLab stack for evad_mm in a virtual environment.
#
#   tools/install.sh                    # creates ./.venv unless it exists, installs everything
#   EVAD_MM_CUDA=1 tools/install.sh     # mmcv with CUDA ops, also on a machine without a GPU
#
# Environment:
#   VENV            where the virtual environment lives (default: <repo>/.venv)
#   PYTHON          interpreter used to create it (default: python3.11)
#   EVAD_MM_CACHE   wheel cache outside the repo (default: ~/.cache/evad_mm)
#   EVAD_MM_CUDA    mmcv's ops: unset = CUDA ops when torch sees a GPU, else CPU only;
#                   1 = CUDA ops (needs a CUDA build of torch; no GPU needed);
#                   0 = CPU ops only
#   EVAD_MM_NVCC    CUDA compiler for those ops: auto (default) = the system nvcc if it
#                   has torch's CUDA major.minor, else NVIDIA's PyPI packages;
#                   system = CUDA_HOME's nvcc, else the nvcc on PATH, else /usr/local/cuda;
#                   pypi = nvidia-cuda-nvcc & co. (CUDA >= 13) in the venv
#   TORCH_CUDA_ARCH_LIST  GPU architectures to compile for, e.g. "8.6;9.0+PTX" (default:
#                   the visible GPUs', else CUDA_ARCHS_DEFAULT below)
#   MAX_JOBS        parallel compile jobs (default: all cores)
#
# mmcv 2.1.0 has no wheel on PyPI for current torch releases, so it is built from
# its sdist. torch >= 2.14 headers need C++20 while mmcv's setup.py asks for C++17:
# the build patches that one flag. The built wheel is cached keyed by mmcv version,
# torch version, python tag and platform (a torch change forces a rebuild); a CUDA
# build goes to a subfolder named by CUDA version and architectures, e.g.
# .../cp311-linux_x86_64/cuda-13.0-sm90/, so CPU and CUDA builds never mix.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
CACHE="${EVAD_MM_CACHE:-$HOME/.cache/evad_mm}"
MMCV_VERSION=2.1.0
TORCH_DEFAULT=2.14.1
TORCHVISION_DEFAULT=0.29.1
# Without GPUs or TORCH_CUDA_ARCH_LIST: Turing (T4) to Blackwell, plus PTX for newer GPUs.
CUDA_ARCHS_DEFAULT="7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX"

say() { printf '[evad_mm install] %s\n' "$*"; }
die() { printf '[evad_mm install] error: %s\n' "$*" >&2; exit 1; }

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
# torch, torchvision, torch's CUDA version ('' for a CPU build) and the compute
# capabilities of the visible GPUs ('' without one), one a line.
{ read -r TORCH_VERSION; read -r TORCHVISION_VERSION; read -r TORCH_CUDA; read -r GPU_ARCHS; } < <(
    "$PY" - <<'PYEOF'
import torch, torchvision
print(torch.__version__, torchvision.__version__, torch.version.cuda or '', sep='\n')
gpus = range(torch.cuda.device_count()) if torch.cuda.is_available() else []
caps = sorted({torch.cuda.get_device_capability(i) for i in gpus})
print(';'.join('%d.%d' % cap for cap in caps))
PYEOF
)

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

# 2. mmcv with compiled ops (CPU, or CPU + CUDA), from the cache or built once.
CUDA_REASON=
case "${EVAD_MM_CUDA:-}" in
    1) WITH_CUDA=1; CUDA_REASON="EVAD_MM_CUDA=1" ;;
    0) WITH_CUDA=0 ;;
    '') if [ -n "$GPU_ARCHS" ]; then WITH_CUDA=1; CUDA_REASON="torch sees a GPU"; else WITH_CUDA=0; fi ;;
    *) die "EVAD_MM_CUDA=$EVAD_MM_CUDA: use 1 (build mmcv's CUDA ops), 0 (CPU ops only) or leave it unset (CUDA ops when torch sees a GPU)" ;;
esac
if [ "$WITH_CUDA" = 1 ] && [ -z "$TORCH_CUDA" ]; then
    die "$CUDA_REASON, but torch $TORCH_VERSION is a CPU build (torch.version.cuda is None): install a CUDA build of torch into $VENV first, or unset EVAD_MM_CUDA for CPU ops"
fi

nvcc_release() {  # "13.0" from `nvcc --version`, empty if it does not run
    { "$1" --version 2>/dev/null || true; } | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p'
}
nvcc_toolkit() {  # the toolkit root nvcc itself uses (also through wrapper scripts)
    local here
    here="$({ "$1" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 || true; } | sed -n 's/^#\$ _HERE_=//p' | head -1)"
    [ -n "$here" ] || die "$1 --dryrun does not tell its toolkit folder: set CUDA_HOME to it"
    dirname "$here"
}
find_system_nvcc() {
    local nvcc
    for nvcc in ${CUDA_HOME:+"$CUDA_HOME/bin/nvcc"} "$(command -v nvcc || true)" /usr/local/cuda/bin/nvcc; do
        if [ -n "$nvcc" ] && [ -x "$nvcc" ]; then echo "$nvcc"; return; fi
    done
}
# NVIDIA's compiler from PyPI, installed into the venv next to the CUDA runtime,
# cuBLAS, cuSPARSE and cuSOLVER headers that torch's wheel already brought. From
# CUDA 13 all of them share one tree, site-packages/nvidia/cu<major>/.
use_pypi_nvcc() {
    local major="${TORCH_CUDA%%.*}" site
    if [ "$major" -lt 13 ]; then
        die "NVIDIA's PyPI compiler is supported here from CUDA 13 on, torch has CUDA $TORCH_CUDA: install the CUDA $TORCH_CUDA toolkit, set CUDA_HOME to it and rerun with EVAD_MM_NVCC=system"
    fi
    say "installing NVIDIA's CUDA $TORCH_CUDA compiler and headers from PyPI into $VENV"
    "${PIP[@]}" install -q -c "$CONSTRAINTS" "nvidia-cuda-nvcc==$TORCH_CUDA.*" "nvidia-cuda-crt==$TORCH_CUDA.*" \
        "nvidia-nvvm==$TORCH_CUDA.*" "nvidia-cuda-cccl==$TORCH_CUDA.*" "nvidia-cuda-runtime==$TORCH_CUDA.*"
    site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    CUDA_HOME="$site/nvidia/cu$major"
    [ "$(nvcc_release "$CUDA_HOME/bin/nvcc")" = "$TORCH_CUDA" ] ||
        die "$CUDA_HOME/bin/nvcc does not run or is not CUDA $TORCH_CUDA; see the pip output above"
    # torch links extensions with -lcudart; the wheel has only libcudart.so.<major>.
    mkdir -p "$VENV/evad_mm-cuda-lib"
    ln -sf "$CUDA_HOME/lib/libcudart.so.$major" "$VENV/evad_mm-cuda-lib/libcudart.so"
    export LDFLAGS="-L$VENV/evad_mm-cuda-lib${LDFLAGS:+ $LDFLAGS}"
}
setup_cuda_compiler() {  # sets CUDA_HOME (and what the build needs) for torch's build tools
    local nvcc release mode="${EVAD_MM_NVCC:-auto}" site
    case "$mode" in
        auto|system)
            nvcc="$(find_system_nvcc)"
            release="${nvcc:+$(nvcc_release "$nvcc")}"
            if [ -n "$release" ] && [ "$release" = "$TORCH_CUDA" ]; then
                CUDA_HOME="$(nvcc_toolkit "$nvcc")"
                # a toolkit without the math libraries (cuBLAS, ... headers that torch's
                # CUDA headers include) finds them in torch's NVIDIA packages
                site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
                if [ -d "$site/nvidia/cu${TORCH_CUDA%%.*}/include" ]; then
                    export CUDA_INC_PATH="$site/nvidia/cu${TORCH_CUDA%%.*}/include"
                fi
            elif [ "$mode" = system ]; then
                die "EVAD_MM_NVCC=system: ${nvcc:-no nvcc found (CUDA_HOME, PATH, /usr/local/cuda)}${release:+ is CUDA $release}, torch $TORCH_VERSION needs CUDA $TORCH_CUDA: set CUDA_HOME to a CUDA $TORCH_CUDA toolkit, or use EVAD_MM_NVCC=pypi"
            else
                say "${nvcc:-no system nvcc}${release:+ is CUDA $release}; torch needs CUDA $TORCH_CUDA: using NVIDIA's PyPI compiler"
                use_pypi_nvcc
            fi ;;
        pypi) use_pypi_nvcc ;;
        *) die "EVAD_MM_NVCC=$mode: use auto, system or pypi" ;;
    esac
    export CUDA_HOME
    say "CUDA compiler: $CUDA_HOME/bin/nvcc (CUDA $(nvcc_release "$CUDA_HOME/bin/nvcc"))"
}
# TORCH_CUDA_ARCH_LIST from the environment, the visible GPUs or the default, sorted.
cuda_arch_list() {
    local archs arch
    if [ -n "${TORCH_CUDA_ARCH_LIST:-}" ]; then
        archs="$TORCH_CUDA_ARCH_LIST"
    elif [ -n "$GPU_ARCHS" ]; then
        archs="$GPU_ARCHS+PTX"
    else
        archs="$CUDA_ARCHS_DEFAULT"
    fi
    archs="$(printf '%s\n' ${archs//;/ } | sort -uV | paste -sd ';')"
    for arch in ${archs//;/ }; do
        [[ "$arch" =~ ^[0-9]+\.[0-9]+a?(\+PTX)?$ ]] ||
            die "TORCH_CUDA_ARCH_LIST entry '$arch': use compute capabilities such as '8.6;9.0+PTX'"
    done
    echo "$archs"
}
# Before a long build: nvcc can compile for every architecture asked for.
check_nvcc_archs() {
    local arch supported
    supported=" $("$CUDA_HOME/bin/nvcc" --list-gpu-code | tr '\n' ' ')"
    for arch in ${TORCH_CUDA_ARCH_LIST//;/ }; do
        arch="${arch%+PTX}" && arch="${arch%a}"
        [[ "$supported" == *" sm_${arch//./} "* ]] ||
            die "TORCH_CUDA_ARCH_LIST entry '$arch': $CUDA_HOME/bin/nvcc compiles only for$supported"
    done
}

PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
PLATFORM="$("$PY" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_"))')"
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION/torch-$TORCH_VERSION/$PY_TAG-$PLATFORM"
BUILD_FLAVOUR="$TORCH_VERSION"
BUILD_ENV=(FORCE_CUDA=0)
if [ "$WITH_CUDA" = 1 ]; then
    TORCH_CUDA_ARCH_LIST="$(cuda_arch_list)"  # a plain assignment: `set -e` stops on its error
    export TORCH_CUDA_ARCH_LIST
    CUDA_TAG="cuda-$TORCH_CUDA-sm$(echo "$TORCH_CUDA_ARCH_LIST" | tr -d . | tr ';' _)"
    WHEEL_DIR="$WHEEL_DIR/$CUDA_TAG"
    BUILD_FLAVOUR="$TORCH_VERSION $CUDA_TAG"
    BUILD_ENV=(FORCE_CUDA=1)
    say "mmcv with CUDA ops ($CUDA_REASON): CUDA $TORCH_CUDA, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
elif [ -n "$GPU_ARCHS" ]; then
    BUILD_ENV=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)  # mmcv's setup.py builds CUDA ops when it sees a GPU
    say "mmcv with CPU ops only (EVAD_MM_CUDA=0), although torch sees a GPU"
fi
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

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$BUILD_FLAVOUR" ] && mmcv_ops_work; then
    say "mmcv $MMCV_VERSION with compiled ops already installed (torch ${BUILD_FLAVOUR/ /, })"
else
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
        say "no cached mmcv wheel in $WHEEL_DIR"
        if [ "$WITH_CUDA" = 1 ]; then
            setup_cuda_compiler
            check_nvcc_archs
            say "building mmcv $MMCV_VERSION with CPU and CUDA ops from source, once per torch version and architecture list: for one architecture 43 CPU-minutes measured (96 minutes on one core of a busy 2-core machine); each further architecture adds CUDA kernels"
        else
            say "building mmcv $MMCV_VERSION from source: this takes about 15 minutes on 2 cores (once per torch version)"
        fi
        BUILD="$(mktemp -d)"
        trap 'rm -rf "$BUILD" "$WHEEL_DIR.tmp"' EXIT  # also when the build fails
        "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD"
        tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
        SRC="$BUILD/mmcv-$MMCV_VERSION"
        # torch >= 2.14 headers: "#error C++20 or later compatible compiler is required".
        sed -i "s/'-std=c++17'/'-std=c++20'/g" "$SRC/setup.py"
        rm -rf "$WHEEL_DIR.tmp" && mkdir -p "$WHEEL_DIR.tmp"
        (cd "$SRC" && env "${BUILD_ENV[@]}" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "${PIP[@]}" wheel --no-deps --no-build-isolation --no-cache-dir \
            -c "$CONSTRAINTS" -w "$WHEEL_DIR.tmp" .)
        # only the wheel is replaced: the CUDA builds' subfolders stay
        mkdir -p "$WHEEL_DIR" && rm -f "$WHEEL_DIR"/mmcv-*.whl
        mv "$WHEEL_DIR.tmp"/mmcv-*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.tmp"
        rm -rf "$BUILD" && trap - EXIT
        say "cached $(ls "$WHEEL_DIR"/mmcv-*.whl)"
    else
        say "using cached $(ls "$WHEEL_DIR"/mmcv-*.whl)"
    fi
    "${PIP[@]}" install -q --force-reinstall --no-deps "$WHEEL_DIR"/mmcv-*.whl
    echo "$BUILD_FLAVOUR" > "$STAMP"
fi

# 3. The rest of the stack and evad_mm itself.
say "installing mmengine, mmdet, mmaction2, timm, decord and test tools"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
    -r "$ROOT/requirements/deploy.txt"  # onnx + onnxruntime: evad_mm.deployment and its tests
"${PIP[@]}" install -q --no-deps -c "$CONSTRAINTS" openmim==0.3.9
"${PIP[@]}" install -q -c "$CONSTRAINTS" -e "$ROOT"

# 4. Smoke test: torch unchanged, compiled ops run, the stack imports with evad_mm;
#    with CUDA ops asked for, they are there, and on a GPU they agree with the CPU ops.
"$PY" - <<PYEOF
import os
import sys
import torch
assert torch.__version__ == "$TORCH_VERSION", f"torch changed to {torch.__version__}"
import evad_mm  # applies the compatibility shims
import mmaction.models, mmdet.models  # noqa: F401
from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms
feat = torch.rand(1, 2, 8, 8, requires_grad=True)
rois = torch.tensor([[0., 1., 1., 6., 6.]])
RoIAlign((2, 2), 1.0, 2, aligned=True)(feat, rois).sum().backward()
mmcv_cuda = get_compiling_cuda_version()
if "$WITH_CUDA" == "1" and mmcv_cuda == 'not available':
    os.remove("$STAMP")  # so that the next run reinstalls mmcv
    sys.exit("[evad_mm install] error: mmcv in $VENV was built without CUDA ops although "
             "$CUDA_REASON (torch has CUDA $TORCH_CUDA): EVAD's RoIAlign would fail on GPU "
             "tensors. Fix: delete $WHEEL_DIR, then rerun with CUDA ops forced, "
             "EVAD_MM_CUDA=1 make install (or EVAD_MM_CUDA=1 bash tools/install.sh); "
             "EVAD_MM_NVCC=pypi uses NVIDIA's PyPI compiler if the system nvcc is the problem.")
where = 'CPU'
if torch.cuda.is_available() and mmcv_cuda != 'not available':
    out_cpu = RoIAlign((2, 2), 1.0, 2, aligned=True)(feat.detach(), rois)
    out_gpu = RoIAlign((2, 2), 1.0, 2, aligned=True)(feat.detach().cuda(), rois.cuda())
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-5, atol=1e-5)
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep_cpu = nms(boxes, scores, 0.5)
    _, keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert keep_gpu.cpu().tolist() == keep_cpu.tolist() == [0, 2], (keep_gpu, keep_cpu)
    where = f'CPU and {torch.cuda.get_device_name(0)}'
print(f'[evad_mm install] ok: torch {torch.__version__} | mmcv ops run on {where} '
      f'(mmcv CUDA: {mmcv_cuda}) | evad_mm {evad_mm.__version__}')
PYEOF
