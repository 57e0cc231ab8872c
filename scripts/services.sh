#!/usr/bin/env bash
# Makes sure the services the tests talk to are up: PostgreSQL on
# 127.0.0.1:5432 (trust auth, database "test") and Redis on 127.0.0.1:6379.
# On these machines both are installed from Debian packages and usually
# running; this starts whichever is down. Set JETTY_TEST_DATABASE_URL or
# JETTY_TEST_REDIS_URL to use other instances (then nothing is started).
set -u

log() { printf 'services: %s\n' "$*" >&2; }

wait_for() { # name, probe command...
	local name=$1; shift
	for _ in $(seq 1 30); do
		if "$@" >/dev/null 2>&1; then log "$name is up"; return 0; fi
		sleep 1
	done
	log "$name did not come up"; return 1
}

status=0

if [ -z "${JETTY_TEST_DATABASE_URL:-}" ]; then
	if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
		log "PostgreSQL is up"
	elif command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
		log "starting PostgreSQL"
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
		wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432 || status=1
	else
		log "PostgreSQL is not installed (apt-get install postgresql); its tests will skip or fail"
		status=1
	fi
	if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && command -v psql >/dev/null 2>&1; then
		if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
			log "creating database test"
			psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null 2>&1 || status=1
		fi
	fi
fi

if [ -z "${JETTY_TEST_REDIS_URL:-}" ]; then
	if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
		log "Redis is up"
	elif command -v redis-server >/dev/null 2>&1; then
		log "starting Redis"
		mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
			--dir /var/lib/redis --logfile /var/log/redis/ci.log || true
		wait_for Redis sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG' || status=1
	else
		log "Redis is not installed (apt-get install redis-server); its tests will skip or fail"
		status=1
	fi
fi

exit $status
