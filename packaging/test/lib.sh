# Helpers for the package tests: clean Debian 12 roots, the services as their units run them,
# free ports, waiting. Sourced by the test scripts; needs root, debootstrap and the Debian archive.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RELEASE=${CHECKPOINT_RELEASE_DIR:-$REPO/release}
CACHE=${CHECKPOINT_TEST_CACHE:-/var/cache/checkpoint-packaging}
WORK=$(mktemp -d /tmp/checkpoint-pkgtest.XXXXXX)
ROOTS=()
PIDS=()
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }
summary() { echo "packaging: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; }

cleanup() {
  local pid root
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for root in "${ROOTS[@]}"; do
    umount "$root/dev" 2>/dev/null || umount -l "$root/dev" 2>/dev/null || true
    umount "$root/proc" 2>/dev/null || umount -l "$root/proc" 2>/dev/null || true
  done
  # Only remove roots whose mounts are gone (never follow a bind mount of /dev).
  for root in "${ROOTS[@]}"; do
    if ! grep -q " $root/" /proc/mounts; then rm -rf "$root"; fi
  done
  grep -q " $WORK/" /proc/mounts || rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# A minimal Debian 12 root (debootstrap minbase, cached as a tarball), with /proc and /dev.
make_root() { # make_root NAME: sets ROOT
  local name=$1 root="$WORK/$1"
  mkdir -p "$CACHE"
  if [ ! -f "$CACHE/bookworm-minbase.tar" ]; then
    echo "# debootstrap --variant=minbase bookworm (once; cached in $CACHE)"
    local tmp="$CACHE/bootstrap.$$"
    rm -rf "$tmp"
    debootstrap --variant=minbase bookworm "$tmp" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$CACHE/debootstrap.log" 2>&1
    tar -C "$tmp" -cf "$CACHE/bookworm-minbase.tar.partial" .
    mv "$CACHE/bookworm-minbase.tar.partial" "$CACHE/bookworm-minbase.tar"
    rm -rf "$tmp"
  fi
  mkdir -p "$root"
  tar -C "$root" -xf "$CACHE/bookworm-minbase.tar"
  ROOTS+=("$root")
  mount -t proc proc "$root/proc"
  mount --bind /dev "$root/dev"
  ROOT=$root
}

# dpkg -i inside the root (unsafe-io: a test root need not survive a power cut).
install_debs() {
  local root=$1; shift
  local f names=()
  for f in "$@"; do cp "$f" "$root/tmp/"; names+=("/tmp/$(basename "$f")"); done
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg --force-unsafe-io -i "${names[@]}"
}

deb() { # deb NAME ARCH -> the newest matching file in the release dir
  local f
  f=$(ls -t "$RELEASE"/"$1"_*_"$2".deb 2>/dev/null | head -1)
  [ -n "$f" ] || { echo "no $1 package for $2 in $RELEASE: run npm run release" >&2; return 1; }
  echo "$f"
}

# The value of KEY= in a unit file (first one).
unit_value() { sed -n "s/^$2=//p" "$1" | head -1; }

# Runs a service of the root the way its unit does: its User, SupplementaryGroups, Environment,
# EnvironmentFile and ExecStart; extra NAME=VALUE arguments are added to the environment (ports).
# Output goes to $WORK/<unit>.log; sets LAST_PID (also remembered for cleanup).
start_unit() {
  local root=$1 unit=$2; shift 2
  local file="$root/lib/systemd/system/$unit"
  local user groups exec envfile line env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent)
  user=$(unit_value "$file" User)
  groups=$(unit_value "$file" SupplementaryGroups | tr ' ' ',')
  exec=$(unit_value "$file" ExecStart)
  while IFS= read -r line; do env+=("$line"); done < <(sed -n 's/^Environment=//p' "$file")
  envfile=$(unit_value "$file" EnvironmentFile); envfile=${envfile#-}
  if [ -n "$envfile" ] && [ -f "$root$envfile" ]; then
    while IFS= read -r line; do [ -n "$line" ] && env+=("$line"); done < "$root$envfile"
  fi
  env+=("$@")
  # Groups the unit names but the root lacks (video, dialout in minbase) are left out, as systemd would fail them.
  local g have=()
  for g in ${groups//,/ }; do chroot "$root" getent group "$g" >/dev/null && have+=("$g"); done
  local spec=(--userspec="$user:$user")
  [ ${#have[@]} -gt 0 ] && spec+=(--groups="$(IFS=,; echo "${have[*]}"),$user")
  # shellcheck disable=SC2086
  chroot "${spec[@]}" "$root" env -i "${env[@]}" $exec >"$WORK/$unit.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Ids of the screenings waiting in an agent's outbox (read from a copy: the live file belongs to the agent).
outbox_ids() {
  local db=$1 copy="$WORK/outbox-copy"
  rm -rf "$copy"; mkdir -p "$copy"
  cp "$db" "$copy/outbox.sqlite"; [ -f "$db-wal" ] && cp "$db-wal" "$copy/outbox.sqlite-wal"
  node -e '
    const Db = require(process.argv[1] + "/node_modules/better-sqlite3");
    const db = new Db(process.argv[2]);
    for (const r of db.prepare("SELECT payload FROM outbox WHERE topic LIKE ?").all("%/screening")) console.log(JSON.parse(r.payload.toString()).id);
  ' "$REPO" "$copy/outbox.sqlite"
}

# Runs a command in the root as a service user with that unit's environment.
as_unit_user() {
  local root=$1 unit=$2; shift 2
  local file="$root/lib/systemd/system/$unit" user groups line env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent)
  user=$(unit_value "$file" User)
  groups=$(unit_value "$file" SupplementaryGroups | tr ' ' ',')
  while IFS= read -r line; do env+=("$line"); done < <(sed -n 's/^Environment=//p' "$file")
  local g have=()
  for g in ${groups//,/ }; do chroot "$root" getent group "$g" >/dev/null && have+=("$g"); done
  local spec=(--userspec="$user:$user")
  [ ${#have[@]} -gt 0 ] && spec+=(--groups="$(IFS=,; echo "${have[*]}"),$user")
  chroot "${spec[@]}" "$root" env -i "${env[@]}" "$@"
}

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls until the command succeeds.
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + seconds ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "# timed out after ${seconds}s waiting for $what" >&2; return 1; fi
    sleep 1
  done
}

# A copy of a .deb with another version (what an upgrade looks like to dpkg), without rebuilding.
bump_version() {
  local src=$1 version=$2 dir="$WORK/bump.$$"
  rm -rf "$dir"; dpkg-deb -R "$src" "$dir"
  sed -i "s/^Version: .*/Version: $version/" "$dir/DEBIAN/control"
  local out="$WORK/$(dpkg-deb -f "$src" Package)_${version}_$(dpkg-deb -f "$src" Architecture).deb"
  # The stamped version is what --version prints: the upgrade must show it.
  find "$dir" -path '*/@checkpoint/protocol/version.json' -exec sed -i "s/\"version\":\"[^\"]*\"/\"version\":\"$version\"/" {} +
  dpkg-deb --root-owner-group -Zgzip -z1 -b "$dir" "$out" >/dev/null
  rm -rf "$dir"
  echo "$out"
}
