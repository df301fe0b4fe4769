#!/usr/bin/env bash
# Nightly fault-injection run: builds in release mode, runs every fault
# workload against a real local cluster and checks each verdict:
#   smoke, kill, pause, fail-rate, mixed   must be valid       (exit 0)
#   stale-reads                            must find an anomaly (exit 1)
# Network faults (link proxies):
#   partition, partition-5, delay, partition-quorum-reads   must be valid (exit 0)
#   partition-local-reads                                    must find an anomaly (exit 1)
# Disk faults (lazyfs):
#   lose-unsynced, lose-unsynced-5, corrupt   must be valid         (exit 0)
#   no-fsync                                  must find an anomaly  (exit 1)
# lose-unsynced* and no-fsync run the replicas on lazyfs mounts: they need
# /dev/fuse and fusermount3 (Debian/Ubuntu: apt-get install fuse3).
# and, when `etcd` is on PATH (apt-get install etcd-server etcd-client):
#   etcd-smoke, etcd-kill, etcd-pause, etcd-partition       must be valid (exit 0)
#   etcd-serializable, etcd-serializable-partition          must find an anomaly (exit 1)
# and, when python3 is on PATH, through `db: exec` (paxoskv's own server and
# the example client workloads/exec-client.py):
#   exec-paxoskv                           must be valid       (exit 0)
# The runs stay in $STORE (default store/) for inspection; a table of
# verdicts is printed and written to $STORE/nightly-summary.txt.
#
#   scripts/nightly.sh                 # everything
#   scripts/nightly.sh kill pause      # some workloads
#   STORE=/tmp/nightly scripts/nightly.sh
#   PROFILE=debug BASE_PORT=24000 scripts/nightly.sh smoke   # quick local check
#
# BASE_PORT (optional) moves the client ports to BASE_PORT+i, the Paxos
# ports to BASE_PORT+100+i and the link proxies to BASE_PORT+200..,
# away from anything already on 8000/9000/10000.
set -uo pipefail
cd "$(dirname "$0")/.."

STORE=${STORE:-store}
WORKLOADS=("$@")
if [ ${#WORKLOADS[@]} -eq 0 ]; then
  WORKLOADS=(smoke kill pause fail-rate mixed stale-reads)
  # Network faults.
  WORKLOADS+=(partition partition-5 delay partition-local-reads partition-quorum-reads)
  # Disk faults.
  WORKLOADS+=(lose-unsynced lose-unsynced-5 corrupt no-fsync)
  if command -v etcd >/dev/null; then
    WORKLOADS+=(etcd-smoke etcd-kill etcd-pause etcd-partition etcd-serializable etcd-serializable-partition)
  else
    echo "etcd not on PATH: skipping the etcd workloads (apt-get install etcd-server etcd-client)"
  fi
  if command -v python3 >/dev/null; then
    WORKLOADS+=(exec-paxoskv)
  else
    echo "python3 not on PATH: skipping the exec workload (apt-get install python3)"
  fi
fi

PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release --bins || exit 2
else
  cargo build --bins || exit 2
fi
HARNESS=target/$PROFILE/harness
PORTS=()
if [ -n "${BASE_PORT:-}" ]; then
  PORTS=(--base-client-port "$BASE_PORT" --base-paxos-port "$((BASE_PORT + 100))")
  PORTS+=(--base-proxy-port "$((BASE_PORT + 200))")
fi

expected() {
  case "$1" in
    stale-reads | no-fsync | etcd-serializable | etcd-serializable-partition) echo 1 ;;
    partition-local-reads) echo 1 ;;
    *) echo 0 ;;
  esac
}

mkdir -p "$STORE"

# The workload file of $1. The exec workloads name the binaries under
# target/release/: another profile gets a copy pointing at its own.
workload_file() {
  local f="workloads/$1.yaml"
  if [ "$PROFILE" != release ] && grep -q 'target/release/' "$f"; then
    sed "s#target/release/#target/$PROFILE/#g" "$f" > "$STORE/$1.yaml"
    f="$STORE/$1.yaml"
  fi
  echo "$f"
}
summary="$STORE/nightly-summary.txt"
printf '%-28s %-9s %-9s %-8s %s\n' workload expected got result store > "$summary"
failures=0
for w in "${WORKLOADS[@]}"; do
  echo "=== $w"
  "$HARNESS" run "$(workload_file "$w")" --store "$STORE" --no-progress "${PORTS[@]}"
  code=$?
  want=$(expected "$w")
  if [ "$code" = "$want" ]; then result=ok; else result=FAILED; failures=$((failures + 1)); fi
  dir=$(readlink -f "$STORE/$w/latest" 2>/dev/null || echo "-")
  printf '%-28s %-9s %-9s %-8s %s\n' "$w" "$want" "$code" "$result" "$dir" >> "$summary"
done
echo
cat "$summary"
if [ "$failures" -gt 0 ]; then
  echo "$failures workload(s) did not give the expected verdict"
  exit 1
fi
