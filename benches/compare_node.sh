#!/usr/bin/env bash
# Side-by-side figures for the storage node, in one run on one machine (loopback):
#   remote `blob put` / `blob get` of SIZE MiB through `net-mesh serve` vs the local CLI on the
#   same data, and vs a plain TCP copy of the same file (the transport limit);
#   16 clients × SIZE16 MiB at once vs one client (aggregate throughput ratio) and the node's
#   peak RSS; `blob pull` of SIZE MiB between two nodes vs `rsync -W` of the same file.
# Usage: [ROUNDS=3] benches/compare_node.sh [SIZE_MIB=1024] [SIZE16_MIB=64] [WORK_DIR=/tmp/nm-node-bench]
# (put, get and TCP copy times are the median of ROUNDS runs, local and remote alternating)
# Installs its peers (rsync, GNU time) with apt-get when they are missing.
set -euo pipefail
SIZE_MIB=${1:-1024}
SIZE16_MIB=${2:-64}
WORK=${3:-/tmp/nm-node-bench}
ROUNDS=${ROUNDS:-3}
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need rsync || [ ! -x /usr/bin/time ]; then
  apt-get update -qq && apt-get install -y -qq rsync time >/dev/null
fi
cargo build --release -q -p net-mesh-cli
NM=$PWD/target/release/net-mesh

rm -rf "$WORK" && mkdir -p "$WORK"
IN=$WORK/input.bin
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$IN"
for i in $(seq 1 16); do
  head -c "$((SIZE16_MIB * 1024 * 1024))" /dev/urandom > "$WORK/in16-$i.bin"
  head -c "$((SIZE16_MIB * 1024 * 1024))" /dev/urandom > "$WORK/one16-$i.bin"
done
sync

# Each timed run starts with no dirty pages left by the one before (the puts write GiBs).
# A timed command that fails ends the bench (a fast failure must not pass for a fast run).
secs() {
  local s e; sync; s=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "timed command failed: $*" >&2; return 1; }
  e=$(date +%s.%N); echo "$e - $s" | bc -l
}
# Pages this VM has not touched lately cost ~10x more to fill than just-freed ones: a `dd` of
# 1 GiB into a new file took 2.3-2.6 s of system time while the page cache grew, 0.2 s right
# after a 1 GiB file was deleted. Before each timed command that writes, `warm MIB` writes and
# deletes that much, so both sides of a comparison fill just-freed pages.
warm() { dd if=/dev/zero of="$WORK/warm" bs=1M count="$(($1 + 64))" status=none; rm -f "$WORK/warm"; }
ratio() { echo "scale=3; $1 / $2" | bc -l; }
mibs() { echo "scale=1; $1 / $2" | bc -l; }

# The client's identity, allowed to write on both nodes; node B's identity may read on A.
CLIENT=$WORK/client
"$NM" --data-dir "$CLIENT" identity generate default >/dev/null
CLIENT_ID=$("$NM" --data-dir "$CLIENT" identity show default --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')
"$NM" --data-dir "$WORK/b" identity generate default >/dev/null
B_ID=$("$NM" --data-dir "$WORK/b" identity show default --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')
printf '%s write\n%s read\n' "$CLIENT_ID" "$B_ID" > "$WORK/allow-a"
printf '%s write\n' "$CLIENT_ID" > "$WORK/allow-b"

# start NAME ALLOW: starts a node on WORK/NAME, sets NODE_ADDR and NODE_PID
start() {
  local fifo=$WORK/$1.addr
  rm -f "$fifo" && mkfifo "$fifo"
  "$NM" --data-dir "$WORK/$1" serve --listen 127.0.0.1:0 --allow "$2" > "$fifo" 2>"$WORK/$1.log" &
  NODE_PID=$!
  read -r NODE_ADDR < "$fifo"
}
start a "$WORK/allow-a"; A=$NODE_ADDR; A_PID=$NODE_PID
start b "$WORK/allow-b"; B=$NODE_ADDR; B_PID=$NODE_PID
trap 'kill $A_PID $B_PID ${N_PID:-} 2>/dev/null || true' EXIT
C() { "$NM" --data-dir "$CLIENT" "$@"; }

# Plain TCP copy of the file over loopback (sendfile into a socket, server discards).
tcp_copy() {
  python3 - "$IN" <<'PY'
import os, socket, sys, threading
path = sys.argv[1]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
got = [0]
def sink():
    c, _ = srv.accept()
    buf = bytearray(1 << 20)
    while True:
        n = c.recv_into(buf)
        if not n: break
        got[0] += n
t = threading.Thread(target=sink); t.start()
s = socket.create_connection(("127.0.0.1", port))
with open(path, "rb") as f:
    s.sendfile(f)
s.close(); t.join()
assert got[0] == os.path.getsize(path), "the server did not get every byte"
PY
}

# Puts and gets run ROUNDS times, local and remote alternating, and each side reports its
# median, each put after `warm`. Each round's puts store another random file, each side into
# a fresh data dir (a fresh node for the remote put) that is deleted right after, the order
# alternating. (Without both, a put's time swung with the pages it landed on: three 1 GiB
# local puts into one growing store took 1.6, 2.8 and 2.6 s, against 0.5-0.6 s each into a
# store deleted before each put.)
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
puts_local=(); puts_remote=(); gets_local=(); gets_remote=(); tcps=()
put_local() {
  local t
  warm "$SIZE_MIB"; t=$(secs "$NM" --data-dir "$WORK/local" blob put "$1") || return 1
  rm -rf "$WORK/local"; puts_local+=("$t")
}
put_remote() {
  local t
  start "p$2" "$WORK/allow-b"; N_PID=$NODE_PID
  warm "$SIZE_MIB"; t=$(secs C --node "$NODE_ADDR" blob put "$1") || return 1
  kill "$N_PID"; wait "$N_PID" 2>/dev/null || true
  rm -rf "$WORK/p$2"; puts_remote+=("$t")
}
rm -rf "$WORK/local"
for r in $(seq 1 "$ROUNDS"); do
  f=$WORK/round-$r.bin; head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$f"
  if [ $((r % 2)) -eq 1 ]; then put_local "$f"; put_remote "$f" "$r"
  else put_remote "$f" "$r"; put_local "$f"; fi
  rm -f "$f"
done
t_local_put=$(median "${puts_local[@]}")
t_remote_put=$(median "${puts_remote[@]}")
C --node "$A" blob put "$IN" > /dev/null
REF=$("$NM" --data-dir "$WORK/local" blob put "$IN")
"$NM" --data-dir "$WORK/local" blob get "$REF" > /dev/null
C --node "$A" blob get "$REF" | cmp - "$IN"   # both did all the work: bytes equal
for r in $(seq 1 "$ROUNDS"); do
  gets_local+=("$(secs "$NM" --data-dir "$WORK/local" blob get "$REF")")
  gets_remote+=("$(secs C --node "$A" blob get "$REF")")
  tcps+=("$(secs tcp_copy)")
done
t_local_get=$(median "${gets_local[@]}")
t_remote_get=$(median "${gets_remote[@]}")
t_tcp=$(median "${tcps[@]}")

# 16 clients at once vs one client, SIZE16 MiB each, ROUNDS times on a fresh node each (its
# own data dir, so nothing deduplicates across rounds), the two orders alternating.
# The same work both ways, on different random files (nothing deduplicates): one client puts
# 16 files one after another; 16 clients put 16 others at once.
ones=(); sixteens=(); rss_node=0
for r in $(seq 1 "$ROUNDS"); do
  start "c$r" "$WORK/allow-b"; N=$NODE_ADDR; N_PID=$NODE_PID
  one_client() { for i in $(seq 1 16); do C --node "$N" blob put "$WORK/one16-$i.bin" || return 1; done; }
  sixteen_clients() {
    local pids=() i
    for i in $(seq 1 16); do C --node "$N" blob put "$WORK/in16-$i.bin" > "$WORK/ref16-$i" 2>/dev/null & pids+=($!); done
    # Each client's own status (not a bare `wait`: the nodes are children too).
    for i in "${pids[@]}"; do wait "$i" || return 1; done
  }
  if [ $((r % 2)) -eq 1 ]; then
    warm "$((16 * SIZE16_MIB))"; ones+=("$(secs one_client)")
    warm "$((16 * SIZE16_MIB))"; sixteens+=("$(secs sixteen_clients)")
  else
    warm "$((16 * SIZE16_MIB))"; sixteens+=("$(secs sixteen_clients)")
    warm "$((16 * SIZE16_MIB))"; ones+=("$(secs one_client)")
  fi
  for i in $(seq 1 16); do C --node "$N" blob get "$(cat "$WORK/ref16-$i")" | cmp - "$WORK/in16-$i.bin"; done
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$N_PID/status")
  [ "$rss" -gt "$rss_node" ] && rss_node=$rss
  kill "$N_PID"; wait "$N_PID" 2>/dev/null || true
  rm -rf "$WORK/c$r"
done
t_one=$(median "${ones[@]}")
t_sixteen=$(median "${sixteens[@]}")

# Pull SIZE MiB from A to B vs rsync -W of the same file to a local path.
warm "$SIZE_MIB"; t_pull=$(secs C --node "$B" blob pull "$REF" --from "$A")
pull_again=$(C --node "$B" blob pull "$REF" --from "$A" --json)
warm "$SIZE_MIB"; t_rsync=$(secs rsync -W "$IN" "$WORK/rsync.out")
cmp "$WORK/rsync.out" "$IN"

agg16=$(mibs "$((16 * SIZE16_MIB))" "$t_sixteen")
one16=$(mibs "$((16 * SIZE16_MIB))" "$t_one")
printf '\nrounds (seconds): local put %s | remote put %s | local get %s | remote get %s | tcp %s | one client 16 x %s | 16 clients %s\n' "${puts_local[*]}" "${puts_remote[*]}" "${gets_local[*]}" "${gets_remote[*]}" "${tcps[*]}" "${ones[*]}" "${sixteens[*]}"
printf '\n%-52s %10s %10s %8s\n' "comparison (${SIZE_MIB} MiB random file, loopback)" "node" "peer" "ratio"
printf '%-52s %9.2fs %9.2fs %8s\n' "remote put vs local put (goal: throughput >= 0.7x)" "$t_remote_put" "$t_local_put" "$(ratio "$t_local_put" "$t_remote_put")"
printf '%-52s %9.2fs %9.2fs %8s\n' "remote put vs plain TCP copy" "$t_remote_put" "$t_tcp" "$(ratio "$t_tcp" "$t_remote_put")"
printf '%-52s %9.2fs %9.2fs %8s\n' "remote get vs local get (goal: throughput >= 0.7x)" "$t_remote_get" "$t_local_get" "$(ratio "$t_local_get" "$t_remote_get")"
printf '%-52s %9.2fs %9.2fs %8s\n' "remote get vs plain TCP copy" "$t_remote_get" "$t_tcp" "$(ratio "$t_tcp" "$t_remote_get")"
printf '%-52s %7s MiB/s %6s MiB/s %8s\n' "16 clients x ${SIZE16_MIB} MiB vs one client 16 x (goal >= 0.8x)" "$agg16" "$one16" "$(ratio "$agg16" "$one16")"
printf '%-52s %9s KiB\n' "node peak RSS, highest of the rounds (goal <= 256 MiB)" "$rss_node"
printf '%-52s %9.2fs %9.2fs %8s\n' "blob pull A->B vs rsync -W" "$t_pull" "$t_rsync" "$(ratio "$t_rsync" "$t_pull")"
printf '%-52s %s\n' "second pull" "$pull_again"
