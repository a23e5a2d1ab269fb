# Shared by the scripts in scripts/services (sourced, not run: it is not executable, so the loops
# of scripts/test and scripts/release skip it).

# started NAME: tells the script that started the services (scripts/test, scripts/release)
# that NAME was started by this run, so that it stops NAME when it ends. OUTBOX_STARTED_SERVICES
# names a file listing them; without it (a developer's `start`), nothing is recorded.
started() {
	[ -n "${OUTBOX_STARTED_SERVICES:-}" ] && echo "$1" >>"$OUTBOX_STARTED_SERVICES"
	return 0
}

# stale_listener PORT: when the process listening on 127.0.0.1:PORT runs from a directory or
# binary that no longer exists (a clone deleted while its server ran on), stops it and returns 0,
# so the caller starts a fresh one; otherwise returns 1 and leaves it alone.
stale_listener() {
	local pid
	pid=$(ss -ltnpH "( sport = :$1 )" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
	[ -n "$pid" ] || return 1
	local exe cwd
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
	cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
	case "$exe $cwd" in
	*"(deleted)"*) ;;
	*) return 1 ;;
	esac
	echo "port $1: the server there (pid $pid) runs from a deleted directory; stopping it"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	return 0
}
