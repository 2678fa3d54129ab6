#!/usr/bin/env bash
# Writes the secrets compose.yaml mounts: random passwords and API tokens, the URLs that carry the
# passwords, and a self-signed TLS certificate for nginx (replace cert.pem/key.pem with your own).
# Existing files are kept, so running it again changes nothing. Nothing here is ever committed.
#
#   deploy/compose/make-secrets.sh [DIR]      (default: deploy/compose/secrets)
#   SERVER_NAME=cartflow.example.com deploy/compose/make-secrets.sh
set -euo pipefail
dir="${1:-$(dirname "$0")/secrets}"
mkdir -p "$dir/tls"
chmod 700 "$dir"

random() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }
# Writes $2 to $dir/$1 unless the file is there; `read_secret` gives back what the file holds.
keep() { [ -s "$dir/$1" ] || (umask 077 && printf '%s\n' "$2" >"$dir/$1"); }
read_secret() { head -n 1 "$dir/$1"; }

keep postgres_password "$(random)"
keep redis_password "$(random)"
keep s3_access_key "cartflow$(random | head -c 8)"
keep s3_secret_key "$(random)"
keep grafana_password "$(random)"
for who in operator service prometheus shop; do keep "${who}_token" "$(random)"; done

pg=$(read_secret postgres_password)
keep shop_url "postgres://postgres:$pg@postgres:5432/shop"
keep registry_store_url "postgres://postgres:$pg@postgres:5432/mlflow"
keep analytics_url "postgres://postgres:$pg@postgres:5432/analytics"
keep redis_url "redis://:$(read_secret redis_password)@redis:6379/0"
keep redis_auth.conf "requirepass $(read_secret redis_password)"
# cartflow's API tokens and their scopes (docs/serving.md): one line, as CARTFLOW_AUTH__TOKENS takes it.
keep cartflow_tokens "$(printf '[{ name = "operator", token = "%s", scopes = ["admin"] }, { name = "service", token = "%s", scopes = ["registry:read", "registry:write"] }, { name = "prometheus", token = "%s", scopes = ["metrics"] }, { name = "shop", token = "%s", scopes = ["predict", "features:read"] }]' \
  "$(read_secret operator_token)" "$(read_secret service_token)" "$(read_secret prometheus_token)" "$(read_secret shop_token)")"

if [ ! -s "$dir/tls/cert.pem" ]; then
  name="${SERVER_NAME:-localhost}"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$name" \
    -addext "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/tls/key.pem" -out "$dir/tls/cert.pem" 2>/dev/null
  chmod 600 "$dir/tls/key.pem"
fi
# The containers run as other users (cartflow: uid 10001, postgres, nginx) and get each file by a
# bind mount, which needs the file readable, not the folder: the folder stays the owner's alone.
chmod 644 "$dir"/* "$dir"/tls/*
chmod 700 "$dir" "$dir/tls"
echo "secrets in $dir: API tokens (operator_token: admin; shop_token: predict), passwords, TLS certificate"
