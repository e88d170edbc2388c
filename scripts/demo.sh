#!/usr/bin/env bash
# The built-in example (run by `make demo` inside a sandbox): PostgreSQL 15 from Debian packages,
# the classic case. Starts it, lets psql create a table and insert rows, then asks rodiff which
# paths the container wrote — and compares with what `docker diff` can see —, plans the mounts it
# needs to run read-only, and proves the plan by running it again with them (`rodiff verify`).
set -euo pipefail

RODIFF=${RODIFF:-target/release/rodiff}
IMAGE=rodiff-demo/postgres:15
NAME=rodiff-demo-pg-$$

[[ -n ${DOCKER_HOST:-} ]] || { echo "demo: run me through 'make demo' (needs the sandbox's DOCKER_HOST)" >&2; exit 2; }
trap 'docker rm -f -v "$NAME" >/dev/null 2>&1 || true' EXIT

echo "demo: starting PostgreSQL 15 ($IMAGE) as $NAME" >&2
docker run -d --network none --name "$NAME" "$IMAGE" >/dev/null
for _ in $(seq 120); do
  docker exec "$NAME" pg_isready -q 2>/dev/null && break
  sleep 0.5
done
docker exec "$NAME" pg_isready >&2
docker exec "$NAME" psql -q -v ON_ERROR_STOP=1 -c \
  "CREATE TABLE visits (id serial PRIMARY KEY, at timestamptz DEFAULT now());
   INSERT INTO visits DEFAULT VALUES; INSERT INTO visits DEFAULT VALUES;" >&2
echo "demo: rows in the table: $(docker exec "$NAME" psql -tA -c 'SELECT count(*) FROM visits')" >&2

echo
echo "== rodiff diff $NAME  (docker diff format; data files summarised) =="
"$RODIFF" diff "$NAME" | sort -k2 | awk '
  /^[ACD] \/var\/lib\/postgresql\/data\/./ { data++; next }
  { print }
  END { if (data) printf "   … and %d entries below /var/lib/postgresql/data\n", data }'

echo
echo "== written, but invisible to docker diff (kind T: fails under --read-only all the same) =="
"$RODIFF" diff "$NAME" --format jsonl | grep '"kind":"T"' || echo "   (none)"

echo
ours=$("$RODIFF" diff "$NAME" | sort | md5sum)
theirs=$(docker diff "$NAME" | sort | md5sum)
if [[ $ours == "$theirs" ]]; then
  echo "rodiff's docker-format output is identical to docker diff's ($(docker diff "$NAME" | wc -l) entries)."
else
  echo "rodiff and docker diff differ (names with newlines or non-UTF-8 bytes are printed differently)."
fi

echo
echo "== rodiff plan $NAME  (the flags to add to docker run) =="
"$RODIFF" plan "$NAME"
echo
echo "== why each mount (rodiff plan $NAME --format json) =="
"$RODIFF" plan "$NAME" --format json | python3 -c '
import json, sys
for m in json.load(sys.stdin)["mounts"]:
    print("  %-22s %-6s %s" % (m["path"], m["kind"], m["reason"]))'

echo
echo "== rodiff verify $NAME  (runs it again, read-only with the plan, and lets psql write) =="
"$RODIFF" verify "$NAME" --wait 10 --probe \
  'pg_isready -q && psql -q -v ON_ERROR_STOP=1 -c "CREATE TABLE visits (id serial); INSERT INTO visits DEFAULT VALUES;"'
