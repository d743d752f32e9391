#!/usr/bin/env bash
# Read every file a boot needs once, on the first boot of a new root volume
# (systemd/cvstack-prewarm.service).
#
#   prewarm.sh STAMP PATH...
#
# A root volume made from the image's EBS snapshot (a new instance, a new image) is loaded
# lazily: the first read of each block comes from S3 and is much slower than a later one. The
# first boot reads the files it needs anyway (and builds the TensorRT plans, minutes); this
# reads the rest of the hot set in the background at idle priority (the Triton image's layers,
# the backend image, models, plans, /opt/cvstack), so that no later boot, and no warm-pool start,
# pays the penalty on a file the first boot did not touch. Then it writes STAMP, and the unit's
# ConditionPathExists skips it on every later boot. Interrupted (a stop during the read), it
# simply runs again at the next boot: blocks already read are fast.
set -euo pipefail

STAMP="${1:?usage: prewarm.sh STAMP PATH...}"
shift
(($#)) || { echo "prewarm: usage: prewarm.sh STAMP PATH..." >&2; exit 2; }
PARALLEL="${CVSTACK_PREWARM_PARALLEL:-16}"  # EBS serves parallel reads of a cold volume faster

started=$SECONDS
roots=()
for path in "$@"; do
  [[ -e "$path" ]] && roots+=("$path")
done
((${#roots[@]})) || { echo "prewarm: none of $* exists; nothing to read" >&2; exit 1; }
# -xdev: the files of these volumes only (not a running container's overlay mounts). Best
# effort: the boot runs meanwhile, and a file it removes (a container's, a swapped model
# version) has nothing left to read.
bytes="$(find "${roots[@]}" -xdev -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')"
find "${roots[@]}" -xdev -type f -print0 2>/dev/null \
  | xargs -0 -r -P "$PARALLEL" -n 64 cat >/dev/null 2>&1 || true
mkdir -p "$(dirname "$STAMP")"
date -u +%FT%TZ >"$STAMP"
echo "prewarm: read $((bytes / 1048576)) MiB under ${roots[*]} in $((SECONDS - started)) s"
