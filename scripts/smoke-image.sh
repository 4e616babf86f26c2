#!/usr/bin/env bash
# Checks a built gateway image does the whole job: it runs as non-root under an init process,
# migrates a new database from the migrations inside its package, serves, and speaks typed text.
#
#   docker build -t maeul-gateway . && scripts/smoke-image.sh maeul-gateway
#
# It starts a throwaway Mosquitto and the image on a private network, sends a spoken disaster
# alert to an empty city with the bootstrap token, and removes everything when done.
set -euo pipefail

IMAGE="${1:-maeul-gateway}"
NAME="maeul-smoke-$$"
TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
KEK="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CHECKPOINT_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
AUDIO_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PHONE_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fail() { echo "smoke: FAILED: $*" >&2; docker logs "$NAME-gw" 2>&1 | tail -n 40 >&2 || true; exit 1; }
cleanup() { docker rm -f "$NAME-gw" "$NAME-mqtt" >/dev/null 2>&1 || true; docker network rm "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

docker network create "$NAME" >/dev/null
docker run -d --name "$NAME-mqtt" --network "$NAME" eclipse-mosquitto:2 \
    mosquitto -c /mosquitto-no-auth.conf >/dev/null
docker run -d --name "$NAME-gw" --network "$NAME" -p 127.0.0.1::8000 \
    -e GATEWAY_API_TOKEN="$TOKEN" -e GATEWAY_JWT_SECRET="$SECRET" \
    -e GATEWAY_KEY_ENCRYPTION_KEY="$KEK" \
    -e GATEWAY_AUDIT_CHECKPOINT_KEY="$CHECKPOINT_KEY" \
    -e GATEWAY_AUDIO_URL_KEY="$AUDIO_KEY" -e GATEWAY_PHONE_KEY="$PHONE_KEY" \
    -e GATEWAY_MQTT_URL="mqtt://$NAME-mqtt:1883" "$IMAGE" >/dev/null
PORT="$(docker port "$NAME-gw" 8000/tcp | head -n 1 | sed 's/.*://')"
URL="http://127.0.0.1:$PORT"

for _ in $(seq 60); do
    curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
    sleep 1
done
curl -fsS "$URL/readyz" | grep -q '"ready":true' || fail "/readyz never became ready"
echo "smoke: ready (migrated and serving)"

[ "$(docker exec "$NAME-gw" id -u)" != 0 ] || fail "the gateway runs as root"
docker exec "$NAME-gw" sh -c 'tr "\0" " " < /proc/1/cmdline' | grep -q tini || fail "PID 1 is not tini"
docker exec "$NAME-gw" maeul --version || fail "maeul --version"
docker exec "$NAME-gw" espeak-ng --version >/dev/null || fail "no espeak-ng in the image"
echo "smoke: non-root, tini, espeak-ng"

auth=(-H "Authorization: Bearer $TOKEN")
district="$(curl -fsS "${auth[@]}" -H 'Content-Type: application/json' \
    -d '{"code": "d01", "name": "시험동"}' "$URL/api/v1/districts" | sed 's/.*"id": *\([0-9]*\).*/\1/')"
curl -fsS "${auth[@]}" -H 'Content-Type: application/json' \
    -d "{\"code\": \"v001\", \"name\": \"시험마을\", \"district_id\": $district}" \
    "$URL/api/v1/villages" >/dev/null
status="$(curl -sS -o /dev/null -w '%{http_code}' "${auth[@]}" \
    -F category=disaster -F text='산불 대피 시험입니다.' -F "district_ids=$district" \
    "$URL/api/v1/broadcasts")"
[ "$status" = 201 ] || fail "a spoken broadcast answered $status, not 201"
echo "smoke: a spoken disaster alert was created (201)"
echo "smoke: OK"
