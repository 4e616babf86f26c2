#!/bin/sh
# The gateway container's entry point: `serve` (the default) migrates the database, then serves
# the API on port 8000; any other command runs as given (e.g. `maeul db upgrade`, `sh`).
#
#   MAEUL_MIGRATE=0            skip the migration (another replica or a job does it)
#   MAEUL_MIGRATE_ATTEMPTS=30  tries, 2 s apart, while the database is still starting
set -eu

if [ "$#" -eq 0 ] || [ "$1" = serve ]; then
    [ "$#" -eq 0 ] || shift
    if [ "${MAEUL_MIGRATE:-1}" != 0 ]; then
        attempts="${MAEUL_MIGRATE_ATTEMPTS:-30}"
        try=1
        until maeul db upgrade; do
            if [ "$try" -ge "$attempts" ]; then
                echo "maeul-entrypoint: migration failed $try times; giving up" >&2
                exit 1
            fi
            echo "maeul-entrypoint: migration failed (try $try of $attempts); retrying in 2 s" >&2
            try=$((try + 1))
            sleep 2
        done
    fi
    exec maeul serve --host 0.0.0.0 --port 8000 "$@"
fi

exec "$@"
