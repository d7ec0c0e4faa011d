#!/usr/bin/env bash
# Installs the x64 packages into clean Debian 12 roots and uses them as an engineer would:
#   server root: checkpoint-nodejs + checkpoint-server; broker and gateway run as their units do;
#                an API user is added, the dashboards and the API answer, a device is registered.
#   edge root:   checkpoint-nodejs + checkpoint-edge; the box enrolls with the token, gets its
#                model offline, `edge-agent doctor` runs, the agent screens simulated people and
#                the gateway shows the screenings.
#   upgrade:     with the broker down the agent's screenings wait in the outbox; both packages are
#                upgraded; /etc/checkpoint (edited) and the outbox are kept, --version shows the
#                new version, and the outbox reaches the gateway once the broker is back.
# Also: systemd-analyze verify on the installed units, gateway backup/restore on the installed server.
source "$(dirname "$0")/lib.sh"
ARCH=amd64
MIRROR=${CHECKPOINT_MODELS_MIRROR:-$REPO/../shared/models}
started=$(date +%s)

echo "# server root"
make_root server; SERVER=$ROOT
install_debs "$SERVER" "$(deb checkpoint-nodejs $ARCH)" "$(deb checkpoint-server $ARCH)" >"$WORK/install-server.log" 2>&1 \
  && ok "checkpoint-server installs into a clean Debian 12 root" || { not_ok "checkpoint-server installs"; cat "$WORK/install-server.log"; summary; exit 1; }
check "gateway has its own broker user (gateway.env, 0640)" test "$(stat -c %a "$SERVER/etc/checkpoint/gateway.env")" = 640
check "--version prints the stamped release version" grep -q "^$(dpkg-deb -f "$(deb checkpoint-server $ARCH)" Version)\$" <(chroot "$SERVER" env -i PATH=/usr/bin:/bin /usr/bin/checkpoint-gateway --version)

echo "# systemd-analyze verify (the root has no systemd: the host's own units stand in for the targets)"
cp -rn /lib/systemd/system/. "$SERVER/lib/systemd/system/" 2>/dev/null || true
verify_out=$(systemd-analyze verify --root="$SERVER" /lib/systemd/system/checkpoint-broker.service /lib/systemd/system/checkpoint-gateway.service 2>&1) && verify_rc=0 || verify_rc=$?
check "server units verify clean (systemd-analyze verify)" test "$verify_rc" -eq 0 -a -z "$verify_out"
[ -z "$verify_out" ] || echo "$verify_out" | sed 's/^/#   /'

MQTT_PORT=$(free_port); HTTP_PORT=$(free_port); METRICS_PORT=$(free_port)
# An engineer's edit of a conffile: must survive the upgrade below.
sed -i "s/^  port: 9883/  port: $METRICS_PORT/" "$SERVER/etc/checkpoint/broker.yaml"
start_unit "$SERVER" checkpoint-broker.service "CHECKPOINT_MQTT_PORT=$MQTT_PORT"; broker_pid=$LAST_PID
wait_for 60 "broker" bash -c "exec 3<>/dev/tcp/127.0.0.1/$MQTT_PORT" && ok "broker listens (as checkpoint-broker)" || { not_ok "broker listens"; cat "$WORK/checkpoint-broker.service.log"; }
start_unit "$SERVER" checkpoint-gateway.service "CHECKPOINT_HTTP_PORT=$HTTP_PORT" "CHECKPOINT_MQTT_URL=mqtt://127.0.0.1:$MQTT_PORT"; gateway_pid=$LAST_PID
GW=http://127.0.0.1:$HTTP_PORT
wait_for 90 "gateway" curl -sf "$GW/healthz" && ok "gateway answers /healthz (as checkpoint-gateway, MQTT with its generated password)" || { not_ok "gateway healthy"; cat "$WORK/checkpoint-gateway.service.log"; }
check "dashboards are served" grep -qi '<html' <(curl -sf "$GW/")

printf 'guard-password-1\n' | as_unit_user "$SERVER" checkpoint-gateway.service checkpoint-gateway user add nurse --role guard --config /etc/checkpoint/gateway.yaml >/dev/null
login() { curl -sf -X POST "$GW/api/auth/login" -H 'content-type: application/json' -d '{"username":"nurse","password":"guard-password-1"}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).token'; }
TOKEN=$(login || true)
check "a user added with checkpoint-gateway user add logs in" test -n "$TOKEN"
screening_ids() { curl -sf "$GW/api/screenings?site=hq&checkpoint=gate-1&limit=10000" -H "authorization: Bearer $TOKEN" | node -e 'for (const s of JSON.parse(require("fs").readFileSync(0)).screenings) console.log(s.id)'; }
screenings() { local c; c=$(screening_ids 2>/dev/null | wc -l); echo "$c"; }

ENROLL=$(as_unit_user "$SERVER" checkpoint-gateway.service checkpoint-gateway device add hq/gate-1 --config /etc/checkpoint/gateway.yaml 2>&1 | grep -o 'cpe_[A-Za-z0-9_-]*' | head -1 || true)
check "checkpoint-gateway device add writes the device into the broker's users (group access) and gives a token" test -n "$ENROLL"

echo "# edge root"
make_root edge; EDGE=$ROOT
install_debs "$EDGE" "$(deb checkpoint-nodejs $ARCH)" "$(deb checkpoint-edge $ARCH)" >"$WORK/install-edge.log" 2>&1 \
  && ok "checkpoint-edge installs into a clean Debian 12 root" || { not_ok "checkpoint-edge installs"; cat "$WORK/install-edge.log"; }
cp -rn /lib/systemd/system/. "$EDGE/lib/systemd/system/" 2>/dev/null || true
verify_out=$(systemd-analyze verify --root="$EDGE" /lib/systemd/system/checkpoint-agent.service 2>&1) && verify_rc=0 || verify_rc=$?
check "agent unit verifies clean (systemd-analyze verify)" test "$verify_rc" -eq 0 -a -z "$verify_out"
[ -z "$verify_out" ] || echo "$verify_out" | sed 's/^/#   /'
chroot "$EDGE" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin checkpoint-edge-enroll --gateway "$GW" --token "$ENROLL" >"$WORK/enroll.log" 2>&1 \
  && ok "checkpoint-edge-enroll takes the token" || { not_ok "enroll"; cat "$WORK/enroll.log"; }
# Offline model install from a mirror folder, as on a box without internet.
mkdir -p "$EDGE/tmp/mirror" && cp "$MIRROR/RFB-640-masked_face-v2.onnx" "$EDGE/tmp/mirror/"
as_unit_user "$EDGE" checkpoint-agent.service checkpoint-models fetch masked-face-640 --mirror /tmp/mirror --dest /var/lib/checkpoint-agent/models >/dev/null 2>&1
check "checkpoint-models fetch installs the model offline" test -f "$EDGE/var/lib/checkpoint-agent/models/RFB-640-masked_face-v2.onnx"
# The simulator draws people from face crops (a data set, not part of the package).
cp -r "$REPO/../shared/datasets/mask-sample" "$EDGE/var/lib/checkpoint-agent/faces" && chroot "$EDGE" chown -R checkpoint-agent: /var/lib/checkpoint-agent/faces
cat >>"$EDGE/etc/checkpoint/agent.yaml" <<YAML
profile: pi
source:
  thermal: { kind: sim, seed: 5, realtime: true, facesDir: /var/lib/checkpoint-agent/faces }
YAML
as_unit_user "$EDGE" checkpoint-agent.service edge-agent doctor --config /etc/checkpoint/agent.yaml --timeout 20 >"$WORK/doctor.log" 2>&1 || true
sed 's/^/#   doctor: /' "$WORK/doctor.log"
check "doctor: the model is verified and the broker takes the enrolled credentials" bash -c "grep -q '^ok    model: masked-face-640 verified' '$WORK/doctor.log' && grep -q '^ok    broker: ' '$WORK/doctor.log'"

AGENT_HTTP=$(free_port)
start_unit "$EDGE" checkpoint-agent.service "CHECKPOINT_AGENT_HTTP_PORT=$AGENT_HTTP"; agent_pid=$LAST_PID
enough() { [ "$(screenings)" -ge 3 ]; }
wait_for 180 "screenings at the gateway" enough || true
n=$(screenings)
check "the agent (as checkpoint-agent, on the simulator) sends screenings that the gateway shows ($n)" test "$n" -ge 3
[ "$n" -ge 3 ] || tail -20 "$WORK/checkpoint-agent.service.log"
agent_version() { curl -sf "$GW/api/devices" -H "authorization: Bearer $TOKEN" | node -e '
  const d = JSON.parse(require("fs").readFileSync(0)).devices.find((x) => x.site === "hq" && x.checkpoint === "gate-1");
  console.log(d?.versions?.agent ?? "");'; }
check "the agent's state message carries the package version (devices API: $(agent_version))" test "$(agent_version)" = "$(dpkg-deb -f "$(deb checkpoint-edge $ARCH)" Version)"

echo "# upgrade keeps /etc/checkpoint and the outbox"
stop_pid "$broker_pid"
OUTBOX="$EDGE/var/lib/checkpoint-agent/outbox.sqlite"
queued_two() { [ "$(outbox_ids "$OUTBOX" | wc -l)" -ge 2 ]; }
wait_for 120 "the outbox to hold screenings while the broker is down" queued_two || true
stop_pid "$agent_pid"
outbox_ids "$OUTBOX" | sort >"$WORK/queued.ids"
queued=$(wc -l <"$WORK/queued.ids")
check "screenings wait in the outbox while the broker is down ($queued)" test "$queued" -ge 2
conf_sum=$(sha256sum "$EDGE/etc/checkpoint/agent.yaml" | cut -c1-64)
NEW=$(dpkg-deb -f "$(deb checkpoint-edge $ARCH)" Version).1
install_debs "$EDGE" "$(bump_version "$(deb checkpoint-edge $ARCH)" "$NEW")" >"$WORK/upgrade-edge.log" 2>&1 && ok "checkpoint-edge upgrades to $NEW" || { not_ok "edge upgrade"; cat "$WORK/upgrade-edge.log"; }
check "upgrade keeps /etc/checkpoint/agent.yaml unchanged" test "$(sha256sum "$EDGE/etc/checkpoint/agent.yaml" | cut -c1-64)" = "$conf_sum"
check "upgrade keeps the outbox ($queued screenings)" cmp -s "$WORK/queued.ids" <(outbox_ids "$OUTBOX" | sort)
check "edge-agent --version shows the upgraded version" grep -qx "$NEW" <(chroot "$EDGE" env -i PATH=/usr/bin:/bin /usr/bin/edge-agent --version)
env_sum=$(sha256sum "$SERVER/etc/checkpoint/gateway.env" | cut -c1-64)
install_debs "$SERVER" "$(bump_version "$(deb checkpoint-server $ARCH)" "$NEW")" >"$WORK/upgrade-server.log" 2>&1 && ok "checkpoint-server upgrades to $NEW" || { not_ok "server upgrade"; cat "$WORK/upgrade-server.log"; }
check "server upgrade keeps the edited broker.yaml and the gateway's credentials" bash -c "grep -q 'port: $METRICS_PORT' '$SERVER/etc/checkpoint/broker.yaml' && [ \"\$(sha256sum '$SERVER/etc/checkpoint/gateway.env' | cut -c1-64)\" = '$env_sum' ]"
start_unit "$SERVER" checkpoint-broker.service "CHECKPOINT_MQTT_PORT=$MQTT_PORT"; broker_pid=$LAST_PID
start_unit "$EDGE" checkpoint-agent.service "CHECKPOINT_AGENT_HTTP_PORT=$AGENT_HTTP"; agent_pid=$LAST_PID
delivered() { [ -z "$(comm -23 "$WORK/queued.ids" <(screening_ids | sort))" ]; }
wait_for 120 "the kept outbox to reach the gateway" delivered || true
check "after the upgrade every screening kept in the outbox reaches the gateway" delivered
stop_pid "$agent_pid"

echo "# gateway backup and restore on the installed server"
as_unit_user "$SERVER" checkpoint-gateway.service checkpoint-gateway backup /var/lib/checkpoint-gateway/backup.sqlite --config /etc/checkpoint/gateway.yaml >"$WORK/backup.log" 2>&1
check "checkpoint-gateway backup while it runs" grep -q 'users 1' "$WORK/backup.log"
stop_pid "$gateway_pid"
printf 'other-password-1\n' | as_unit_user "$SERVER" checkpoint-gateway.service checkpoint-gateway user remove nurse --config /etc/checkpoint/gateway.yaml >/dev/null 2>&1
as_unit_user "$SERVER" checkpoint-gateway.service checkpoint-gateway restore /var/lib/checkpoint-gateway/backup.sqlite --config /etc/checkpoint/gateway.yaml >"$WORK/restore.log" 2>&1
check "checkpoint-gateway restore brings the removed user back" grep -q '^nurse' <(as_unit_user "$SERVER" checkpoint-gateway.service checkpoint-gateway user list --config /etc/checkpoint/gateway.yaml)
stop_pid "$broker_pid"

echo "# took $(( $(date +%s) - started ))s"
summary
