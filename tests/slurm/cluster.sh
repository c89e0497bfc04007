#!/usr/bin/env bash
# A real single-node SLURM cluster on loopback (munge, MariaDB + slurmdbd, slurmctld, slurmd), for
# tests/workflow/test_slurm.py. Follows ../../../shared/reference/slurm-local.md (variant A: with slurmdbd, so
# that sacct works and the Snakemake SLURM plugin's status checks never hang), plus one fake GPU
# (gres.conf with File=/dev/null) so that jobs asking for `gpu=1` can be scheduled on a GPU-less node.
#
#   cluster.sh install     apt-get the Debian packages (root, Debian)
#   cluster.sh start DIR   write /etc/slurm configs, start the daemons; PIDs go to DIR/pids/
#   cluster.sh stop DIR    stop exactly the daemons whose PIDs are in DIR/pids/ (reverse order)
set -euo pipefail
cmd=${1:?usage: cluster.sh install|start DIR|stop DIR}

install_packages() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge mariadb-server slurmdbd >/dev/null
}

write_configs() {
  local host mem
  host=$(hostname -s)
  mem=$(free -m | awk '/^Mem:/{print $2}')
  getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >> /etc/hosts
  local cpus; cpus=$(nproc)
  cat > /etc/slurm/slurm.conf <<CONF
# written by mvlpt tests/slurm/cluster.sh: a single-node test cluster on loopback
ClusterName=mvlpttest
SlurmctldHost=${host}
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
NodeName=${host} CPUs=${cpus} Sockets=1 CoresPerSocket=${cpus} ThreadsPerCore=1 RealMemory=${mem} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  echo "NodeName=${host} Name=gpu Count=1 File=/dev/null" > /etc/slurm/gres.conf
  cat > /etc/slurm/slurmdbd.conf <<'CONF'
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=slurmdbpass
StorageLoc=slurm_acct_db
CONF
  chown slurm:slurm /etc/slurm/slurmdbd.conf
  chmod 600 /etc/slurm/slurmdbd.conf
}

wait_for() {  # wait_for SECONDS CMD...: poll until CMD succeeds
  local n=$(( $1 * 10 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; return 1
}

start_cluster() {
  local dir=${1:?}; local pids="$dir/pids"; mkdir -p "$pids" "$dir/log"
  write_configs
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o slurm -g slurm -m 0755 /run/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground >"$dir/log/munged.out" 2>&1 &
  echo $! > "$pids/munged.pid"
  wait_for 10 munge -n
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 >"$dir/log/mariadbd.out" 2>&1 &
  echo $! > "$pids/mariadbd.pid"
  wait_for 30 mariadb-admin ping
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpass';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  /usr/sbin/slurmdbd -D >"$dir/log/slurmdbd.out" 2>&1 &
  echo $! > "$pids/slurmdbd.pid"
  wait_for 30 sacctmgr -n show cluster
  /usr/sbin/slurmctld -D -c >"$dir/log/slurmctld.out" 2>&1 &   # -c: a clean slate, no old jobs
  echo $! > "$pids/slurmctld.pid"
  /usr/sbin/slurmd -D >"$dir/log/slurmd.out" 2>&1 &
  echo $! > "$pids/slurmd.pid"
  node_idle() { [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; }
  wait_for 60 node_idle
  sinfo
}

stop_cluster() {
  local pids="${1:?}/pids"
  for d in slurmd slurmctld slurmdbd mariadbd munged; do
    local f="$pids/$d.pid"; [ -f "$f" ] || continue
    local p; p=$(cat "$f")
    if kill -0 "$p" 2>/dev/null; then
      kill "$p"
      for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$p" 2>/dev/null && kill -9 "$p"
      echo "stopped $d ($p)"
    fi
    rm -f "$f"
  done
}

case "$cmd" in
  install) install_packages ;;
  start) start_cluster "${2:?}" ;;
  stop) stop_cluster "${2:?}" ;;
  *) echo "usage: cluster.sh install|start DIR|stop DIR" >&2; exit 2 ;;
esac
