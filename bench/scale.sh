#!/usr/bin/env bash
# Scale run (issue #12): the Qwen1.5-MoE-A2.7B pipeline at real size on this
# machine. Writes a random-weight dense Qwen2 checkpoint of the Qwen1.5-1.8B
# shape (bench/gendense), upcycles it to 60 experts x 1408, top-4, shared 5632
# (14.3 B parameters, 28.6 GB bf16), quantizes it with GPTQ (128 x 256
# calibration tokens), evaluates both and verifies one against the other.
# For each step it prints wall time, CPU use (percent and CPU-seconds), peak
# RSS, and bytes read from and written to disk (getrusage block counts,
# 512-byte units: page-cache hits are not counted as reads). Before each step
# the page cache of the models in WORKDIR is emptied (bench/evict, no root
# needed; DROP_CACHES=1 drops the whole machine's cache instead), so every
# step reads its inputs from the disk.
#
#   bench/scale.sh [WORKDIR]                      # full size: ~45 GB of disk
#   LAYERS=2 VOCAB=1024 bench/scale.sh /tmp/s     # the real layer shape, 2 layers
#   READ_MBPS=200 STEPS="eval-moe verify cat-moe" bench/scale.sh /tmp/s
#                                                 # again on a kept run, as on a 200 MB/s disk
#
# Environment: LAYERS (24), VOCAB (151936), DTYPE (bf16), INIT (qwen2-report),
# NSAMPLES (128), SEQLEN (256), WINDOWS (16), THREADS (all), KEEP=1 keeps the
# intermediates (each one this run made is otherwise deleted once used),
# STEPS (all: gendense convert quantize eval-moe eval-gptq verify cat-moe; a
# subset runs on the models a KEEP=1 run left), EVICT=0 keeps the page cache,
# READ_MBPS=N caps each step's disk reads at N MB/s (a blkio/io cgroup, root
# only) to reproduce a slower disk. Not part of go test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORK=${1:-/tmp/moeforge-scale}
LAYERS=${LAYERS:-24}
VOCAB=${VOCAB:-151936}
DTYPE=${DTYPE:-bf16}
INIT=${INIT:-qwen2-report}
NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-256}
WINDOWS=${WINDOWS:-16}
TEXT=testdata/tinyshakespeare.txt
STEPS=${STEPS:-gendense convert quantize eval-moe eval-gptq verify cat-moe}
THREADS_FLAG=()
[ -n "${THREADS:-}" ] && THREADS_FLAG=(--threads "$THREADS")

mkdir -p "$WORK"
BIN="$WORK/moeforge"
go build -o "$BIN" ./cmd/moeforge
go build -o "$WORK/gendense" ./bench/gendense
go build -o "$WORK/evict" ./bench/evict

# Bytes the run needs at its peak (dense + MoE + GPTQ + temporaries), from the
# shape: dense ≈ 2 bytes x (2·V·H + L·(4H² + 3·H·F)), MoE ≈ 7.7x dense layers.
need_gb=$(python3 - "$LAYERS" "$VOCAB" <<'PY'
import sys
L, V = int(sys.argv[1]), int(sys.argv[2])
H, F, E, I, S = 2048, 5632, 60, 1408, 5632
dense = 2 * (2 * V * H + L * (4 * H * H + 3 * H * F))
moe = 2 * (2 * V * H + L * (4 * H * H + 3 * H * (E * I + S) + E * H))
gptq = moe * 0.3
print(f"{(dense + moe + gptq) * 1.1 / 1e9:.1f}")
PY
)
free_gb=$(df -P -B1 "$WORK" | awk 'NR==2 {printf "%.1f", $4/1e9}')
echo "scale run: $LAYERS layers, vocab $VOCAB, $DTYPE, init $INIT in $WORK; needs ~$need_gb GB, $free_gb GB free"
if [[ " $STEPS " != *" gendense "* ]] || python3 -c "import sys; sys.exit(0 if float('$free_gb') >= float('$need_gb') else 1)"; then :; else
	echo "scale run: not enough free space in $WORK" >&2
	exit 2
fi

# A cgroup capping disk reads for READ_MBPS (cgroup v2 io.max or v1 blkio).
THROTTLE=()
if [ -n "${READ_MBPS:-}" ]; then
	dev=$(findmnt -no MAJ:MIN -T "$WORK" | head -1 | tr -d ' ')
	bps=$((READ_MBPS * 1000000))
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		cg=/sys/fs/cgroup/moeforge-scale
		mkdir -p "$cg" && echo "$dev rbps=$bps" > "$cg/io.max"
	else
		cg=/sys/fs/cgroup/blkio/moeforge-scale
		mkdir -p "$cg" && echo "$dev $bps" > "$cg/blkio.throttle.read_bps_device"
	fi
	THROTTLE=(sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg")
	echo "scale run: disk reads capped at $READ_MBPS MB/s (device $dev, $cg)"
fi

printf '%-10s %9s %7s %7s %9s %10s %10s  %s\n' STEP WALL_S CPU CPU_S PEAK_RSS READ_GB WRITTEN_GB COMMAND
cold() {
	if [ "${DROP_CACHES:-}" = 1 ]; then
		sync
		echo 3 > /proc/sys/vm/drop_caches
	elif [ "${EVICT:-1}" = 1 ]; then
		local d dirs=()
		for d in "$DENSE" "$MOE" "$GPTQ"; do [ -d "$d" ] && dirs+=("$d"); done
		[ ${#dirs[@]} = 0 ] || "$WORK/evict" "${dirs[@]}" >/dev/null
	fi
}
step() {
	local name=$1 allow=0
	shift
	[[ " $STEPS " == *" $name "* ]] || return 0
	cold
	if [ "$1" = --allow-exit-1 ]; then allow=1; shift; fi
	local log="$WORK/$name.time" rc=0
	/usr/bin/time -v -o "$log" "${THROTTLE[@]}" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
	if [ "$rc" != 0 ] && ! { [ "$allow" = 1 ] && [ "$rc" = 1 ]; }; then
		echo "scale run: step $name failed (exit $rc); see $WORK/$name.err" >&2
		tail -5 "$WORK/$name.err" >&2
		exit 1
	fi
	awk -v name="$name" -v cmd="$*" -F': ' '
		/Elapsed \(wall clock\)/ { n = split($2, p, ":"); wall = 0; for (i = 1; i <= n; i++) wall = wall * 60 + p[i] }
		/User time/ { cpus += $2 }
		/System time/ { cpus += $2 }
		/Percent of CPU/ { cpu = $2 }
		/Maximum resident set size/ { rss = $2 / 1024 / 1024 }
		/File system inputs/ { rd = $2 * 512 / 1e9 }
		/File system outputs/ { wr = $2 * 512 / 1e9 }
		END { printf "%-10s %9.1f %7s %7.0f %7.2fGB %10.2f %10.2f  %s\n", name, wall, cpu, cpus, rss, rd, wr, substr(cmd, 1, 60) }' "$log"
}

DENSE="$WORK/dense" MOE="$WORK/moe" GPTQ="$WORK/gptq"
[[ " $STEPS " != *" gendense "* ]] || rm -rf "$DENSE"
[[ " $STEPS " != *" convert "* ]] || rm -rf "$MOE"
[[ " $STEPS " != *" quantize "* ]] || rm -rf "$GPTQ"
step gendense "$WORK/gendense" --out "$DENSE" --layers "$LAYERS" --vocab "$VOCAB" --dtype "$DTYPE"
step convert "$BIN" convert upcycle --in "$DENSE" --out "$MOE" --init "$INIT" \
	--experts 60 --expert-size 1408 --top-k 4 --shared-size 5632 "${THREADS_FLAG[@]}" --quiet
# Intermediates this run made are deleted once used (unless KEEP=1); models
# a subset of STEPS runs on are never deleted.
made() { [ "${KEEP:-}" != 1 ] && [[ " $STEPS " == *" $1 "* ]]; }
if made gendense; then rm -rf "$DENSE"; fi
step quantize "$BIN" quantize --in "$MOE" --out "$GPTQ" --calib "$TEXT" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" \
	--report "$WORK/gptq-report.json" "${THREADS_FLAG[@]}" --quiet
step eval-moe "$BIN" eval ppl "$MOE" --text "$TEXT" --windows "$WINDOWS" --seqlen "$SEQLEN" "${THREADS_FLAG[@]}"
step eval-gptq "$BIN" eval ppl "$GPTQ" --text "$TEXT" --windows "$WINDOWS" --seqlen "$SEQLEN" "${THREADS_FLAG[@]}"
# Random weights give near-uniform next-token distributions, so top-1 agreement
# is close to chance and the quantized preset may fail: the step records the
# metrics (verify.out) and the cost, not a verdict.
step verify --allow-exit-1 "$BIN" verify --ref "$MOE" --candidate "$GPTQ" --text "$TEXT" --windows "$WINDOWS" --seqlen "$SEQLEN" \
	--expect quantized "${THREADS_FLAG[@]}"
# A baseline in the same run: reading the MoE shards once.
step cat-moe sh -c "cat '$MOE'/*.safetensors > /dev/null"
if made convert; then rm -rf "$MOE"; fi
if made quantize; then rm -rf "$GPTQ"; fi
echo "logs: $WORK/*.out, *.err, *.time"
