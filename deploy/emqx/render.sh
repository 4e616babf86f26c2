#!/bin/sh
# Renders maeul-access.hocon from its template and the environment:
#   MAEUL_GATEWAY_URL         the gateway as the broker nodes reach it, e.g. http://gateway:8000
#                             (the load balancer of the replicas; no trailing slash)
#   MAEUL_BROKER_HOOK_SECRET  the gateways' GATEWAY_BROKER_HOOK_SECRET (`maeul secret` prints one)
# Only these two are replaced: EMQX's own ${username}, ${topic}... stay for EMQX.
set -eu
here=$(dirname "$0")
: "${MAEUL_GATEWAY_URL:?set MAEUL_GATEWAY_URL, e.g. http://gateway:8000}"
: "${MAEUL_BROKER_HOOK_SECRET:?set MAEUL_BROKER_HOOK_SECRET to the gateways GATEWAY_BROKER_HOOK_SECRET}"
case "$MAEUL_BROKER_HOOK_SECRET" in
    *[!A-Za-z0-9_-]*) echo "MAEUL_BROKER_HOOK_SECRET: letters, digits, '-' and '_' only" >&2; exit 1 ;;
esac
out=${1:-"$here/maeul-access.hocon"}
umask 077
envsubst '${MAEUL_GATEWAY_URL} ${MAEUL_BROKER_HOOK_SECRET}' \
    <"$here/maeul-access.hocon.template" >"$out"
echo "wrote $out"
