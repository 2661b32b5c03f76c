#!/usr/bin/env bash
# Stop the Slurm daemons named as arguments (slurmd, slurmctld, munged) by their pid files:
# only the ones a caller started (tests/slurm/start.sh prints them).
set -uo pipefail
for name in "$@"; do
    case "$name" in
        slurmd|slurmctld) pidfile=/run/$name.pid ;;
        munged) pidfile=/run/munge/munged.pid ;;
        *) echo "stop.sh: unknown daemon $name" >&2; continue ;;
    esac
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
exit 0
