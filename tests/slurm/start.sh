#!/usr/bin/env bash
# A single-node Slurm on localhost (Debian slurm-wlm + munge) for the scheduler tests.
# Idempotent: installs the packages when missing only when asked (TASKLADDER_INSTALL_SLURM=1,
# as .ci/run does; else exit 3 with the reason), writes a munge key and a minimal
# slurm.conf once, starts munged, slurmctld and slurmd unless they run, and waits until the
# node is idle. Prints the daemons it started (one name a line) so a caller can stop only those.
# Stop them with tests/slurm/stop.sh.
set -euo pipefail

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    if [ "${TASKLADDER_INSTALL_SLURM:-}" != 1 ]; then
        echo "slurm: slurmctld/munged not installed (TASKLADDER_INSTALL_SLURM=1 installs them)" >&2
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
# The CPUs slurmd itself finds (else nproc without OMP_NUM_THREADS, which nproc honours: a
# process that imported olmo-core has it at 8 and the node would stay invalid, "Low CPUs").
cpus=$( (slurmd -C 2>/dev/null || true) | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n 1)
cpus=${cpus:-$(env -u OMP_NUM_THREADS nproc)}
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))

if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown -R munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true

conf=/etc/slurm/slurm.conf
want=$(cat <<EOF
# taskladder test cluster: one node, this host
ClusterName=taskladder
SlurmctldHost=${host}
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
KillWait=5
MinJobAge=600
SchedulerType=sched/backfill
NodeName=${host} CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" > "$conf"
fi

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! pgrep -x munged >/dev/null; then
    munged --force
    echo munged
fi
if ! running /run/slurmctld.pid; then
    slurmctld
    echo slurmctld
fi
if ! running /run/slurmd.pid; then
    slurmd
    echo slurmd
fi

for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    case "$state" in
        idle*|mix*|alloc*) exit 0 ;;
        down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
echo "slurm: node $host did not become idle (state: ${state:-none})" >&2
exit 1
