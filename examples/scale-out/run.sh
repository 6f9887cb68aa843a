#!/usr/bin/env bash
# Scale-out on one machine, all on loopback: a mosquitto broker, N intentd instances, HAProxy
# in front. Telephony platforms (or intentd-replay) connect to ws://127.0.0.1:$FRONT_PORT/media;
# every instance publishes its events to the one broker.
#
#   examples/scale-out/run.sh [N]        # N instances (default 2); Ctrl-C stops everything
#   mosquitto_sub -h 127.0.0.1 -p 1883 -t 'hermes/#' -v          # in another terminal
#   intentd-replay ws://127.0.0.1:8080/media calls/ --tracks both --calls 16
#
# Ports: FRONT_PORT (8080), BROKER_PORT (1883), the instances INTENTD_A_PORT (8081),
# INTENTD_B_PORT (8082), further ones counting up. Needs haproxy and mosquitto (apt-get
# install haproxy mosquitto) and a model (MODEL, default: the demo's, ../../demo/model).
# Each instance's stdout events go to EVENTS_DIR/events-<i>.jsonl (default: a temporary dir).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
n="${1:-2}"
export FRONT_PORT="${FRONT_PORT:-8080}" BROKER_PORT="${BROKER_PORT:-1883}"
export INTENTD_A_PORT="${INTENTD_A_PORT:-8081}" INTENTD_B_PORT="${INTENTD_B_PORT:-8082}"
model="${MODEL:-$here/../../demo/model}"
intentd="${INTENTD:-intentd}"
state="$(mktemp -d)"
events_dir="${EVENTS_DIR:-$state}"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser %s\n' "$BROKER_PORT" "$(id -un)" \
  > "$state/mosquitto.conf"
mosquitto -c "$state/mosquitto.conf" & pids+=($!)

ports=("$INTENTD_A_PORT" "$INTENTD_B_PORT")
for ((i = 2; i < n; i++)); do ports+=($((INTENTD_B_PORT + i - 1))); done
cfg="$here/haproxy.cfg"
if ((n > 2)); then  # more instances: the same backend with more servers
  cfg="$state/haproxy.cfg"
  cp "$here/haproxy.cfg" "$cfg"
  for ((i = 2; i < n; i++)); do
    echo "    server i$i \"127.0.0.1:${ports[$i]}\" check" >> "$cfg"
  done
fi
for ((i = 0; i < n; i++)); do
  "$intentd" --config "$here/intentd.yaml" --model "$model" \
    --listen "ws://127.0.0.1:${ports[$i]}/media" \
    --output stdout --output "mqtt://127.0.0.1:$BROKER_PORT" > "$events_dir/events-$i.jsonl" &
  pids+=($!)
done
haproxy -f "$cfg" & pids+=($!)
echo "scale-out: $n instances on ports ${ports[*]} behind ws://127.0.0.1:$FRONT_PORT/media;" \
     "events on mqtt://127.0.0.1:$BROKER_PORT (hermes/#, intentd/#)" >&2
wait -n "${pids[@]}"  # one part ended: stop the rest
