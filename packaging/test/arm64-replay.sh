#!/usr/bin/env bash
# The arm64 edge package runs here under qemu-aarch64-static: `edge-agent replay` on a simulated
# folder must give the same decisions as the x64 package. Both run from the .deb contents
# (dpkg-deb -x), each with its own checkpoint-nodejs (Node 20 for its architecture); the arm64
# one finds glibc and libstdc++ in Debian's cross sysroot (/usr/aarch64-linux-gnu).
#   PEOPLE=N (default 2) sets the size of the scene; about a minute per person under qemu here.
source "$(dirname "$0")/lib.sh"
PEOPLE=${PEOPLE:-2}
MIRROR=${CHECKPOINT_MODELS_MIRROR:-$REPO/../shared/models}
QEMU=$(command -v qemu-aarch64-static || true)
[ -n "$QEMU" ] || { not_ok "qemu-aarch64-static is installed (apt-get install qemu-user-static)"; summary; exit 1; }
SYSROOT=/usr/aarch64-linux-gnu
[ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] || { not_ok "arm64 sysroot $SYSROOT (apt-get install g++-aarch64-linux-gnu)"; summary; exit 1; }

for arch in amd64 arm64; do
  mkdir -p "$WORK/$arch"
  dpkg-deb -x "$(deb checkpoint-nodejs $arch)" "$WORK/$arch"
  dpkg-deb -x "$(deb checkpoint-edge $arch)" "$WORK/$arch"
done
check "the arm64 package's node is an AArch64 binary" grep -q 'aarch64\|AArch64' <(od -An -tx2 -j18 -N2 "$WORK/arm64/usr/lib/checkpoint-nodejs/bin/node" | grep -q b7 && echo AArch64)

mkdir -p "$WORK/models" && cp "$MIRROR/RFB-640-masked_face-v2.onnx" "$WORK/models/"
agent() { # agent ARCH ARGS...
  local arch=$1; shift
  local tree="$WORK/$arch" node=("$WORK/$arch/usr/lib/checkpoint-nodejs/bin/node") wrap=()
  if [ "$arch" = arm64 ]; then
    node=("$QEMU" -L "$SYSROOT" "${node[@]}")
    # qemu-user shows the arm64 program this x86 host's /sys CPU topology; onnxruntime's cpuinfo
    # (arm code) reads its cache layout and segfaults on some hosts (seen here: cpu1/cache/index2).
    # A real arm64 box has its own. So the arm64 run sees an empty /sys/devices/system/cpu, in a
    # private mount namespace (onnxruntime then warns that it cannot read CPU features).
    unshare -m true 2>/dev/null && wrap=(unshare -m sh -c 'mount -t tmpfs none /sys/devices/system/cpu && exec "$@"' sh)
  fi
  env -i PATH=/usr/bin:/bin HOME="$WORK" CHECKPOINT_MODELS_DIR="$WORK/models" CHECKPOINT_EDGE_PROFILE=pi CHECKPOINT_LOG_LEVEL=warn \
    "${wrap[@]}" "${node[@]}" "$tree/usr/lib/checkpoint-edge/node_modules/@checkpoint/edge-agent/bin/edge-agent.js" "$@" \
    2> >(grep -v -e 'onnxruntime cpuid_info warning' -e '^Error in cpuinfo' >&2)
}
check "arm64 edge-agent --version under qemu prints the stamped version" grep -qx "$(dpkg-deb -f "$(deb checkpoint-edge arm64)" Version)" <(agent arm64 --version)
agent amd64 simulate --out "$WORK/scene" --people "$PEOPLE" --fever-rate 0.5 --mask-rate 0.5 --seed 11 --faces "$REPO/../shared/datasets/mask-sample"
frames=$(ls "$WORK/scene/frames" | wc -l)
echo "# scene: $PEOPLE people, $frames files"

decisions() { node -e '
  const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  for (const s of lines.sort((a, b) => a.replayFrames[0] - b.replayFrames[0]))
    console.log(JSON.stringify({ frames: s.replayFrames, decision: s.decision, mask: s.mask, tempC: s.temperature?.valueC ?? s.temperatureC ?? null }));
'; }
t0=$(date +%s); agent amd64 replay "$WORK/scene" --json >"$WORK/x64.jsonl"; t1=$(date +%s)
agent arm64 replay "$WORK/scene" --json >"$WORK/arm64.jsonl" 2>"$WORK/arm64.err" || cat "$WORK/arm64.err"; t2=$(date +%s)
echo "# replay: x64 $((t1 - t0))s, arm64 under qemu $((t2 - t1))s"
decisions <"$WORK/x64.jsonl" >"$WORK/x64.decisions"; decisions <"$WORK/arm64.jsonl" >"$WORK/arm64.decisions"
sed 's/^/#   x64:   /' "$WORK/x64.decisions"; sed 's/^/#   arm64: /' "$WORK/arm64.decisions"
check "x64 replay decides for every simulated person ($(wc -l <"$WORK/x64.decisions") of $PEOPLE)" test "$(wc -l <"$WORK/x64.decisions")" -ge "$PEOPLE"
check "arm64 (qemu) replay gives the same decisions, masks and temperatures as x64" bash -c "test -s '$WORK/x64.decisions' && cmp -s '$WORK/x64.decisions' '$WORK/arm64.decisions'"
summary
