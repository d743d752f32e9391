#!/usr/bin/env bash
# Seconds since this boot's init (systemd, PID 1) started, in /proc/uptime's format, for
# `cvstack instance boot-report --uptime-file`: it tells a boot-requested tag from this boot
# from one left by an earlier boot. /proc/uptime counts from the kernel's start, which in a
# container (the boot rehearsal's systemd-nspawn) is the host's; systemd's own start is the
# boot's in both, and on EC2 it follows the kernel by a second or two.
set -euo pipefail
started_us=$(systemctl show --property=UserspaceTimestampMonotonic --value)
case "$started_us" in
  '' | *[!0-9]*) echo "boot-uptime: systemd gave no start time ('$started_us')" >&2; exit 1 ;;
esac
awk -v started_us="$started_us" '{ printf "%.2f 0.00\n", $1 - started_us / 1000000 }' /proc/uptime
