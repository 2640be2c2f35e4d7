#!/usr/bin/env bash
# Boots the bring-up image in QEMU and checks every driver from its console output:
# I2C (three sensors and a NACK), a TMP105 temperature change made over QMP, TCP to a listener on the host's
# loopback (10.0.2.2 inside QEMU), a watchdog reset after `w` stops the feeding, and a panic (`p`) that
# prints and resets. Needs qemu-system-arm and python3. Everything it starts it stops; QEMU is bounded by
# `timeout`.
set -euo pipefail
cd "$(dirname "$0")"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RACKWATCH_BROKER_PORT=$port cargo build --release --quiet --bin rackwatch-bringup
elf=target/thumbv7m-none-eabi/release/rackwatch-bringup

# The "broker": accepts one connection and records what it receives.
python3 - "$port" >"$work/received" <<'PY' &
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
server.settimeout(30)
connection, _ = server.accept()
connection.settimeout(10)
data = b""
while chunk := connection.recv(1024):
    data += chunk
print(data.decode(errors="replace"), end="")
PY
pids+=($!)

# Console input and QMP, on a schedule: change the temperature, starve the watchdog, quit.
drive() {
    sleep 3
    python3 - "$work/qmp.sock" <<'PY'
import json, socket, sys
qmp = socket.socket(socket.AF_UNIX)
qmp.connect(sys.argv[1])
stream = qmp.makefile("rw")
stream.readline()
for command in ({"execute": "qmp_capabilities"},
                {"execute": "qom-set", "arguments": {"path": "/machine/peripheral-anon/device[0]",
                                                     "property": "temperature", "value": 31250}}):
    stream.write(json.dumps(command) + "\n")
    stream.flush()
    while not any(key in json.loads(stream.readline()) for key in ("return", "error")):
        pass
PY
    sleep 2
    printf w
    sleep 5
    printf p
    sleep 2
    printf q
}
drive | timeout 40 qemu-system-arm -M lm3s6965evb -nographic \
    -semihosting-config enable=on,target=native \
    -qmp "unix:$work/qmp.sock,server=on,wait=off" \
    -device tmp105,address=0x48 -device adm1272,address=0x10 -device max31785,address=0x52 \
    -nic user -kernel "$elf" >"$work/console" 2>&1 || true
sleep 1

passed=0
failed=0
check() {
    local what=$1 pattern=$2 file=${3:-$work/console} count=${4:-1}
    if [[ $(grep -c -- "$pattern" "$file" || true) -ge $count ]]; then
        passed=$((passed + 1))
        echo "ok   $what"
    else
        failed=$((failed + 1))
        echo "FAIL $what: no \"$pattern\""
    fi
}
check "banner on UART0" "rackwatch bring-up on lm3s6965evb"
check "SysTick delay" "clock: delay_ms(50) took 5[0-9] ms"
check "TMP105 read" "tmp105@0x48: raw 0x0000 = 0.000 C"
check "ADM1272 READ_VIN" "adm1272@0x10: READ_VIN raw 0x"
check "MAX31785 PMBUS_REVISION" "max31785@0x52: PMBUS_REVISION raw 0x"
check "NACK from an absent address" "NACK on address, as expected"
check "temperature set over QMP" "tmp105@0x48: raw 0x1f40 = 31.250 C"
check "TCP line sent" "tcp: sent"
check "TCP line received on the host" "rackwatch lm3s6965evb" "$work/received"
check "watchdog reset (banner twice)" "rackwatch bring-up on lm3s6965evb" "$work/console" 2
check "panic message" "panic: .*requested from the console"
check "reset after panic (banner three times)" "rackwatch bring-up on lm3s6965evb" "$work/console" 3
check "semihosting exit" "^bye"
if [[ $failed -ne 0 ]]; then
    sed 's/^/console: /' "$work/console"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
