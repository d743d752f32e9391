#!/usr/bin/env bash
# Run a boot step again after a failure, inside the step itself.
#
#   retry.sh ATTEMPTS DELAY_S COMMAND [ARG...]
#
# Why not systemd's Restart=: when a Type=oneshot unit that others Require= fails, systemd (252
# on Debian 12, 249 on Ubuntu 22.04; RestartMode=direct only arrived in 254) fails those
# dependents at once with "Dependency failed" and never starts them again, even after the
# restart succeeds. So a transient failure (IMDS credentials or S3 not there yet in the first
# seconds of a boot) would leave the whole stack down until the next boot. Retrying here keeps
# the unit "activating" until the step has succeeded or really given up.
set -euo pipefail

die() {
  echo "retry: $*" >&2
  exit 2
}

(($# >= 3)) || die "usage: retry.sh ATTEMPTS DELAY_S COMMAND [ARG...]"
attempts="$1"
delay="$2"
shift 2
[[ "$attempts" =~ ^[1-9][0-9]*$ ]] || die "ATTEMPTS must be a positive integer, got '$attempts'"
[[ "$delay" =~ ^[0-9]+$ ]] || die "DELAY_S must be a whole number of seconds, got '$delay'"

for ((try = 1; ; try++)); do
  status=0
  "$@" || status=$?
  ((status == 0)) && exit 0
  if ((try >= attempts)); then
    echo "retry: $1 failed $try times (last exit status $status); giving up" >&2
    exit "$status"
  fi
  echo "retry: try $try of $attempts failed (exit status $status); trying again in ${delay} s" >&2
  sleep "$delay"
done
