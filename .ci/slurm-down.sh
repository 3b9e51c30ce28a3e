#!/usr/bin/env bash
# Stop the daemons .ci/slurm-up.sh started (slurmd, slurmctld, munged), by their
# recorded process ids; daemons it found already running are left alone.
set -uo pipefail

STATE=${SLURM_UP_STATE:-/var/spool/novelty-slurm}
started="$STATE/started"
[ -s "$started" ] || { echo "slurm-down: nothing recorded in $started"; exit 0; }

# Stop in reverse order of start (slurmd, slurmctld, munged).
tac "$started" | while read -r name pid; do
  [ -n "${pid:-}" ] || continue
  if kill -0 "$pid" 2>/dev/null && grep -qx "$name" "/proc/$pid/comm" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "slurm-down: stopped $name ($pid)"
  fi
done
rm -f "$started"
