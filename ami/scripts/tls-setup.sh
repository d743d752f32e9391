#!/usr/bin/env bash
# TLS certificate for nginx on the instance.
#   tls-setup.sh self-signed   before nginx, every boot: makes sure a certificate exists
#                              (first boot: a new self-signed one, generated here so no two
#                              instances share a key and none is baked into the image).
#   tls-setup.sh letsencrypt   after nginx, when CVSTACK_DOMAIN_NAME is set: obtains or keeps a
#                              Let's Encrypt certificate (HTTP-01 through nginx's webroot) and
#                              points nginx at it.
# nginx always reads $CVSTACK_TLS_DIR/fullchain.pem and privkey.pem; both are symlinks.
set -euo pipefail

TLS_DIR="${CVSTACK_TLS_DIR:-/etc/cvstack/tls}"
ACME_ROOT="${CVSTACK_ACME_ROOT:-/var/lib/cvstack/acme}"
DOMAIN="${CVSTACK_DOMAIN_NAME:-}"

die() {
  echo "tls-setup: $*" >&2
  exit 1
}

point_nginx_at() {  # $1: folder holding fullchain.pem and privkey.pem
  ln -sfn "$1/fullchain.pem" "$TLS_DIR/fullchain.pem"
  ln -sfn "$1/privkey.pem" "$TLS_DIR/privkey.pem"
}

self_signed() {
  if [[ -s "$TLS_DIR/fullchain.pem" && -s "$TLS_DIR/privkey.pem" ]]; then
    echo "tls-setup: certificate already in place: $(readlink -f "$TLS_DIR/fullchain.pem")"
    return 0
  fi
  local out="$TLS_DIR/self-signed"
  local names="DNS:localhost,IP:127.0.0.1"
  if [[ -n "$DOMAIN" ]]; then
    names="DNS:$DOMAIN,$names"
  fi
  install -d -m 0755 "$TLS_DIR"
  install -d -m 0700 "$out"
  # ECDSA P-256: instant to generate, accepted by every browser; 825 days is the longest
  # validity Apple platforms accept for a server certificate.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=${DOMAIN:-cvstack}" -addext "subjectAltName=$names" \
    -keyout "$out/privkey.pem.tmp" -out "$out/fullchain.pem.tmp" 2>/dev/null \
    || die "openssl could not create a self-signed certificate in $out"
  chmod 0600 "$out/privkey.pem.tmp"
  mv -f "$out/privkey.pem.tmp" "$out/privkey.pem"
  mv -f "$out/fullchain.pem.tmp" "$out/fullchain.pem"
  # Relative links, so a copy of the folder (or a test's temporary one) stays consistent.
  point_nginx_at self-signed
  echo "tls-setup: self-signed certificate for $names in $out"
}

letsencrypt() {
  if [[ -z "$DOMAIN" ]]; then
    echo "tls-setup: no CVSTACK_DOMAIN_NAME; keeping the self-signed certificate"
    return 0
  fi
  command -v certbot >/dev/null || die "certbot is not installed (ami/provision.sh installs it)"
  install -d -m 0755 "$ACME_ROOT"
  # --keep-until-expiring: a reboot reuses the certificate instead of asking for a new one
  # (Let's Encrypt rate-limits); certbot.timer renews it and the deploy hook reloads nginx.
  certbot certonly --webroot --webroot-path "$ACME_ROOT" --domain "$DOMAIN" \
    --non-interactive --agree-tos --register-unsafely-without-email --keep-until-expiring \
    --deploy-hook "systemctl reload nginx" \
    || die "certbot failed for $DOMAIN: check that its DNS record points at this instance and port 80 is open"
  point_nginx_at "/etc/letsencrypt/live/$DOMAIN"
  systemctl reload nginx
  echo "tls-setup: Let's Encrypt certificate for $DOMAIN in use"
}

case "${1:-}" in
  self-signed) self_signed ;;
  letsencrypt) letsencrypt ;;
  *) die "usage: tls-setup.sh self-signed|letsencrypt" ;;
esac
