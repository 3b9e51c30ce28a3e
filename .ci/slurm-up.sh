#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, as root, for the Slurm tests
# (tests/test_slurm.py) and for trying cluster/slurm/*.sbatch by hand.
#
#   sudo .ci/slurm-up.sh        # installs slurm-wlm + munge (apt) if missing
#   sinfo                       # -> the node is idle
#   sudo .ci/slurm-down.sh      # stops only the daemons this script started
#
# The node is this host (`hostname -s`) with `nproc` CPUs; no cgroups, no
# accounting, no task binding (proctrack/linuxproc, task/none), so it runs inside
# containers. An existing /etc/slurm/slurm.conf that this script did not write is
# left alone (and used as is). Env: SLURM_UP_TIMEOUT (seconds to wait for the node,
# default 60), SLURM_UP_STATE (state/log folder, default /var/spool/novelty-slurm).
set -euo pipefail

TIMEOUT=${SLURM_UP_TIMEOUT:-60}
STATE=${SLURM_UP_STATE:-/var/spool/novelty-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by novelty .ci/slurm-up.sh"

die() { echo "slurm-up: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
  echo "slurm-up: installing slurm-wlm and munge (apt)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
fi

host=$(hostname -s)
cpus=$(nproc)
mkdir -p "$STATE" /etc/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge
# What this script started, so slurm-down stops those and nothing else.
started="$STATE/started"
touch "$started"

# ------------------------------------------------------------------ slurm.conf
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  echo "slurm-up: keeping $CONF (not written by this script)"
else
  cat >"$CONF" <<EOF
$MARK
ClusterName=novelty
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=4
Waittime=0
NodeName=$host CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  echo "slurm-up: wrote $CONF (node $host, $cpus CPUs)"
fi

# ------------------------------------------------------------------ munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
  echo "slurm-up: created /etc/munge/munge.key"
fi
if id munge >/dev/null 2>&1; then
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge
  chown -R munge:munge /var/lib/munge /var/log/munge 2>/dev/null || true
fi
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- munged
  else
    munged --force
  fi
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
  munge -n | unmunge >/dev/null || die "munged did not start (see /var/log/munge/munged.log)"
  pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
  [ -n "$pid" ] && echo "munged $pid" >>"$started"
  echo "slurm-up: started munged"
fi

# ------------------------------------------------------------------ slurmctld, slurmd
start_daemon() {  # start_daemon NAME: start slurmctld or slurmd unless its pid file says it runs
  local name=$1 pidfile="$STATE/$1.pid"
  running "$pidfile" && return 0
  "$name" || die "$name failed to start; see $STATE/$name.log"
  for _ in $(seq 50); do running "$pidfile" && break; sleep 0.2; done
  running "$pidfile" || die "$name did not start; see $STATE/$name.log"
  echo "$name $(cat "$pidfile")" >>"$started"
  echo "slurm-up: started $name"
}
start_daemon slurmctld
start_daemon slurmd

# ------------------------------------------------------------------ wait for the node
deadline=$((SECONDS + TIMEOUT))
state=""
while [ $SECONDS -lt $deadline ]; do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mixed|allocated|completing) echo "slurm-up: node $host is $state"; sinfo; exit 0 ;;
    down*|drain*|fail*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
echo "slurm-up: node $host is not idle after ${TIMEOUT}s (state: ${state:-no answer from slurmctld})" >&2
sinfo -R >&2 || true
tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 2>/dev/null || true
exit 1
