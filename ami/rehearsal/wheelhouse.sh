#!/usr/bin/env bash
# The wheels the rehearsal's images install (no index inside docker build): the backend's
# dependencies and the Triton wheel, pinned to the versions in the host venv (what the CPU
# tests run), downloaded with the host's pip and its package index configuration.
#
#   wheelhouse.sh CACHE_DIR PIP PYPROJECT     fills CACHE_DIR/python-context/wheelhouse
set -euo pipefail

CACHE="${1:?usage: wheelhouse.sh CACHE_DIR PIP PYPROJECT}"
PIP="${2:?usage: wheelhouse.sh CACHE_DIR PIP PYPROJECT}"
PYPROJECT="${3:?usage: wheelhouse.sh CACHE_DIR PIP PYPROJECT}"
TRITON_WHEEL=nvidia-pytriton==0.7.0

requirements="$(python3 - "$PYPROJECT" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["backend"]))
PY
)"
constraints="$("$PIP" freeze --exclude-editable | grep -v '^-e ')"
key="$(printf '%s\n' "$requirements" "$constraints" "$TRITON_WHEEL" | sha256sum | cut -c1-16)"
wheelhouse="$CACHE/python-context/wheelhouse"
if [[ "$(cat "$wheelhouse/.key" 2>/dev/null)" == "$key" ]]; then
  exit 0
fi
rm -rf "$wheelhouse"
mkdir -p "$wheelhouse"
printf '%s\n' "$requirements" >"$CACHE/requirements.txt"
printf '%s\n' "$constraints" >"$CACHE/constraints.txt"
quiet() { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }
"$PIP" download --quiet --dest "$wheelhouse" --constraint "$CACHE/constraints.txt" \
  --requirement "$CACHE/requirements.txt" "setuptools>=69" wheel 2>&1 | quiet
"$PIP" download --quiet --dest "$wheelhouse" --no-deps "$TRITON_WHEEL" 2>&1 | quiet
compgen -G "$wheelhouse/nvidia_pytriton-*.whl" >/dev/null \
  || { echo "wheelhouse: the downloads failed (see above)" >&2; exit 1; }
echo "$key" >"$wheelhouse/.key"
