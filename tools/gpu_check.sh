#!/usr/bin/env bash
# What only a GPU can check, in one go (meant to take a few minutes on one GPU):
#
#   tools/gpu_check.sh [OUT.json]      # default: work_dirs/gpu_check.json
#
# 1. the environment: torch, its CUDA, the GPUs, the CUDA version mmcv's ops
#    were compiled with;
# 2. `pytest -m cuda tests/test_cuda.py`: mmcv's CUDA RoIAlign / nms against
#    the CPU ones, the ViT-B model's outputs on CUDA against CPU, fused
#    attention against eager, float16 and bfloat16 training steps, and 2-process
#    NCCL training when 2 GPUs exist;
# 3. tools/analysis/benchmark.py at the paper's Table 2 setting (ViT-B,
#    16x224x224, batch 8, rho 1.0 and 0.7), fp32 and fp16: clips/s and peak
#    memory.
# Everything goes into one JSON file. Without a GPU it stops after step 1,
# with exit code 0. The exit code is 1 if a test or a benchmark failed.
#
# Environment: VENV (default: <repo>/.venv, as `make install` makes it).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
OUT="${1:-$ROOT/work_dirs/gpu_check.json}"
CONFIG=configs/evad_vitb_ava.py
BENCH_ARGS=(--keep-rates 1.0 0.7 --shape 16 224 224 --batch-size 8
            --iters 10 --warmup 3 --repeats 5 --device cuda --json)

say() { printf '[gpu_check] %s\n' "$*"; }
[ -x "$PY" ] || { say "error: no Python at $PY: run \`make install\` first (or set VENV)" >&2; exit 1; }
cd "$ROOT"

# 1. The environment (also what the JSON file records).
ENV_JSON="$("$PY" - <<'PYEOF'
import json, platform
import torch
import mmcv
import evad_mm
from evad_mm.utils.device import mmcv_cuda_version
gpus = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append(dict(name=p.name, capability='%d.%d' % (p.major, p.minor),
                         memory_gb=round(p.total_memory / 2**30, 1)))
print(json.dumps(dict(
    python=platform.python_version(), torch=torch.__version__,
    torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
    gpus=gpus, mmcv=mmcv.__version__, mmcv_cuda=mmcv_cuda_version(),
    evad_mm=evad_mm.__version__)))
PYEOF
)" && ENV_JSON="${ENV_JSON##*$'\n'}" ||  # the last line: the JSON
 { say "error: the environment in $VENV does not import (torch, mmcv, evad_mm): run \`make install\`" >&2; exit 1; }
"$PY" - "$ENV_JSON" <<'PYEOF'
import json, sys
env = json.loads(sys.argv[1])
print(f"[gpu_check] torch {env['torch']} (CUDA {env['torch_cuda']}), "
      f"python {env['python']}, evad_mm {env['evad_mm']}")
print(f"[gpu_check] mmcv {env['mmcv']}, ops compiled with CUDA: {env['mmcv_cuda']}")
for i, gpu in enumerate(env['gpus']):
    print(f"[gpu_check] GPU {i}: {gpu['name']}, compute capability "
          f"{gpu['capability']}, {gpu['memory_gb']} GB")
PYEOF
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader |
        sed 's/^/[gpu_check] nvidia-smi: /'
fi
if [[ "$ENV_JSON" != *'"cuda_available": true'* ]]; then
    say "no GPU present (torch.cuda.is_available() is False): nothing more to check"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
STATUS=0
if [[ "$ENV_JSON" == *'"mmcv_cuda": "not available"'* ]]; then
    say "error: mmcv's ops were built without CUDA: rebuild them with \`EVAD_MM_CUDA=1 make install\`, then run this again" >&2
    STATUS=1
fi

# 2. The tests that need a GPU.
TEST_CMD=("$PY" -m pytest -m cuda tests/test_cuda.py -v -rs -p no:cacheprovider
          --junitxml="$TMP/junit.xml")
say "running: ${TEST_CMD[*]}"
"${TEST_CMD[@]}"
TEST_RC=$?
[ "$TEST_RC" = 0 ] || STATUS=1

# 3. Throughput and peak memory, fp32 and fp16 (one JSON line each, last).
BENCH_RUNS=("" "--amp fp16")
for i in "${!BENCH_RUNS[@]}"; do
    # shellcheck disable=SC2206  # the options are words
    cmd=("$PY" tools/analysis/benchmark.py "$CONFIG" "${BENCH_ARGS[@]}" ${BENCH_RUNS[$i]})
    say "running: ${cmd[*]}"
    "${cmd[@]}" | tee "$TMP/bench$i.out"
    echo "${PIPESTATUS[0]}" > "$TMP/bench$i.rc"
    printf '%s\n' "${cmd[*]}" > "$TMP/bench$i.cmd"
    [ "$(cat "$TMP/bench$i.rc")" = 0 ] || STATUS=1
done

# 4. One JSON file.
mkdir -p "$(dirname "$OUT")"
"$PY" - "$ENV_JSON" "$TMP" "$OUT" "$TEST_RC" "${TEST_CMD[*]}" <<'PYEOF'
import glob, json, os.path as osp, sys, time
import xml.etree.ElementTree as ET
env, tmp, out, test_rc, test_cmd = sys.argv[1:]
tests = []
if osp.exists(osp.join(tmp, 'junit.xml')):
    for case in ET.parse(osp.join(tmp, 'junit.xml')).iter('testcase'):
        outcome = 'passed'
        for child in case:
            if child.tag in ('failure', 'error', 'skipped'):
                outcome = dict(failure='failed').get(child.tag, child.tag)
                message = child.get('message', '')
        tests.append(dict(name=case.get('name'), outcome=outcome,
                          seconds=float(case.get('time', 0)),
                          **({} if outcome == 'passed' else
                             dict(message=message[:500]))))
benchmarks = []
for rc_file in sorted(glob.glob(osp.join(tmp, 'bench*.rc'))):
    stem = rc_file[:-3]
    lines = open(stem + '.out').read().strip().splitlines()
    run = dict(command=open(stem + '.cmd').read().strip(),
               exit_code=int(open(rc_file).read()))
    try:
        run['result'] = json.loads(lines[-1])
    except (IndexError, ValueError):
        run['output_tail'] = lines[-20:]
    benchmarks.append(run)
report = dict(
    date=time.strftime('%Y-%m-%d %H:%M:%S %z'), environment=json.loads(env),
    tests=dict(command=test_cmd, exit_code=int(test_rc), results=tests),
    benchmarks=benchmarks)
with open(out, 'w') as f:
    json.dump(report, f, indent=1)
counts = {}
for t in tests:
    counts[t['outcome']] = counts.get(t['outcome'], 0) + 1
print('[gpu_check] tests:', ', '.join(f'{n} {k}' for k, n in counts.items()) or 'none ran')
for run in benchmarks:
    if 'result' not in run:
        print(f"[gpu_check] failed (exit code {run['exit_code']}): {run['command']}")
        continue
    report = run['result']
    for r in report['results']:
        memory = r.get('peak_mem_mb')
        print(f"[gpu_check] {report['mode']} {report['amp'] or 'fp32'} rho {r['keep_rate']:.1f} "
              f"batch {report['batch_size']}: {r['clips_per_s']:.1f} clips/s "
              f"({r['speedup']:.2f}x), peak memory "
              + ('-' if memory is None else f'{memory:.0f} MB'))
print(f'[gpu_check] results written to {out}')
PYEOF
exit "$STATUS"
