#!/usr/bin/env bash
# TLS certificate for nginx's operator listener on the instance (the front door's TLS is
# CloudFront's; the instance needs no DNS name).
#   tls-setup.sh self-signed   before nginx, every boot: makes sure a certificate exists
#                              (first boot: a new self-signed one for localhost/127.0.0.1,
#                              generated here so no two instances share a key and none is baked
#                              into the image).
# nginx always reads $CVSTACK_TLS_DIR/fullchain.pem and privkey.pem; both are symlinks.
set -euo pipefail

TLS_DIR="${CVSTACK_TLS_DIR:-/etc/cvstack/tls}"

die() {
  echo "tls-setup: $*" >&2
  exit 1
}

self_signed() {
  if [[ -s "$TLS_DIR/fullchain.pem" && -s "$TLS_DIR/privkey.pem" ]]; then
    echo "tls-setup: certificate already in place: $(readlink -f "$TLS_DIR/fullchain.pem")"
    return 0
  fi
  local out="$TLS_DIR/self-signed"
  local names="DNS:localhost,IP:127.0.0.1"
  install -d -m 0755 "$TLS_DIR"
  install -d -m 0700 "$out"
  # ECDSA P-256: instant to generate, accepted by every browser; 825 days is the longest
  # validity Apple platforms accept for a server certificate.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=cvstack" -addext "subjectAltName=$names" \
    -keyout "$out/privkey.pem.tmp" -out "$out/fullchain.pem.tmp" 2>/dev/null \
    || die "openssl could not create a self-signed certificate in $out"
  chmod 0600 "$out/privkey.pem.tmp"
  mv -f "$out/privkey.pem.tmp" "$out/privkey.pem"
  mv -f "$out/fullchain.pem.tmp" "$out/fullchain.pem"
  # Relative links, so a copy of the folder (or a test's temporary one) stays consistent.
  ln -sfn self-signed/fullchain.pem "$TLS_DIR/fullchain.pem"
  ln -sfn self-signed/privkey.pem "$TLS_DIR/privkey.pem"
  echo "tls-setup: self-signed certificate for $names in $out"
}

case "${1:-}" in
  self-signed) self_signed ;;
  *) die "usage: tls-setup.sh self-signed" ;;
esac
