#!/usr/bin/env bash
# Installs what the tests and the benchmark need that a fresh machine lacks, idempotently (Debian packages:
# the real servers the end-to-end tests start, QEMU, Chromium and its driver), and checks the Rust side:
#   - tests/run.sh adds the embedded targets and the components with explicit `rustup target add` and
#     `rustup component add` lines (rustup installs a rust-toolchain.toml's targets and components only
#     when it installs the toolchain itself, never when the toolchain is already on the machine);
#   - this script fails, naming the file, when a rust-toolchain.toml, a .cargo/config.toml (`target = "X"`)
#     or a script (`--target X`) names a target or component those lines do not add, so a new board that
#     forgets fails here instead of on the next fresh machine;
#   - it checks each target's library is really on disk, and reinstalls a target whose files are gone.
#
# Usage: tests/setup.sh [--bench]   (--bench: the benchmark's packages only, with linux-perf)
# Called by tests/run.sh and bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- Debian packages ------------------------------------------------------------------------------
# "command package" pairs: the command the tests run, the Debian package that provides it.
debian=(
  "mosquitto mosquitto"
  "victoria-metrics victoria-metrics"
  "prometheus-alertmanager prometheus-alertmanager"
  "qemu-system-arm qemu-system-arm"
  "chromium chromium"
  "chromedriver chromium-driver"
  "influxd influxdb"
  "nginx nginx"
  "openssl openssl"
  "promtool prometheus"
)
if [[ ${1:-} == --bench ]]; then
  debian+=("perf linux-perf")
fi

have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /usr/bin/$1 ]]; }
missing=()
for pair in "${debian[@]}"; do
  read -r command package <<<"$pair"
  have "$command" || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  echo "==> installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust targets and components, from every rust-toolchain.toml ----------------------------------
# The files are small and regular (`channel = "…"`, `targets = […]`, `components = […]`), so a
# line-oriented read is enough and needs no TOML tool on a fresh machine.
toolchain_files=()
while IFS= read -r file; do toolchain_files+=("$file"); done < <(
  git ls-files -- 'rust-toolchain.toml' '*/rust-toolchain.toml' 2>/dev/null ||
    find . -name rust-toolchain.toml -not -path '*/target/*'
)

# Prints the quoted words of the TOML array `key = [ … ]` in $1 (one line arrays), one a line.
toml_array() {
  sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\[\(.*\)\].*/\1/p" "$1" | tr ',' '\n' |
    sed -n 's/^[[:space:]]*"\([^"]*\)".*/\1/p'
}
toml_string() {
  sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$1" | head -n 1
}

# The targets and components tests/run.sh adds, read from its `rustup target add` and `rustup component
# add` lines, so the list is written once.
run_sh_words() {
  sed -n "s/^[[:space:]]*rustup $1 add --toolchain \"\$channel\" //p" tests/run.sh | tr ' ' '\n' | sed '/^$/d'
}
mapfile -t installed_by_run_sh < <(run_sh_words target)
mapfile -t components_by_run_sh < <(run_sh_words component)

# The benchmark builds for the host only: its Debian packages are all it needs from here.
[[ ${1:-} == --bench ]] && exit 0

missing_from_run_sh=0
for file in "${toolchain_files[@]}"; do
  channel=$(toml_string "$file" channel)
  if [[ -z $channel ]]; then
    echo "tests/setup.sh: $file names no toolchain channel" >&2
    exit 1
  fi
  mapfile -t targets < <(toml_array "$file" targets)
  mapfile -t components < <(toml_array "$file" components)
  for target in "${targets[@]}"; do
    printf '%s\n' "${installed_by_run_sh[@]}" | grep -qx "$target" || {
      echo "tests/setup.sh: $file names target $target, which tests/run.sh does not add (add it to its" \
        "\`rustup target add\` line, so a fresh machine installs it)" >&2
      missing_from_run_sh=1
    }
  done
  for component in "${components[@]}"; do
    printf '%s\n' "${components_by_run_sh[@]}" | grep -qx "$component" || {
      echo "tests/setup.sh: $file names component $component, which tests/run.sh does not add" >&2
      missing_from_run_sh=1
    }
  done
done
((missing_from_run_sh == 0)) || exit 1

for file in "${toolchain_files[@]}"; do
  channel=$(toml_string "$file" channel)
  mapfile -t targets < <(toml_array "$file" targets)
  mapfile -t components < <(toml_array "$file" components)
  # Look at the files, not only rustup's list: it can say a target is installed when its library is
  # gone (two toolchain names sharing one folder, one of them changed), and the build then fails with
  # "can't find crate for `core`". Reinstall then.
  sysroot=$(rustup run "$channel" rustc --print sysroot)
  for target in "${targets[@]}"; do
    if [[ ! -d $sysroot/lib/rustlib/$target/lib ]]; then
      echo "==> reinstalling target $target for $channel (its library is missing)"
      rustup target remove --toolchain "$channel" "$target" >/dev/null 2>&1 || true
      rustup target add --toolchain "$channel" "$target"
    fi
    [[ -d $sysroot/lib/rustlib/$target/lib ]] || {
      echo "tests/setup.sh: target $target of $file did not install for $channel" >&2
      exit 1
    }
  done
  installed_components=$(rustup component list --installed --toolchain "$channel")
  for component in "${components[@]}"; do
    grep -q "^$component" <<<"$installed_components" || {
      echo "tests/setup.sh: component $component of $file is not installed for $channel" >&2
      exit 1
    }
  done
done

# --- Every target built for is declared ------------------------------------------------------------
# Targets named by scripts and cargo configs. A script passes `--target X`; a config sets `target = "X"`.
undeclared=0
while IFS=: read -r file target; do
  [[ -z $target ]] && continue
  if ! printf '%s\n' "${installed_by_run_sh[@]}" | grep -qx "$target"; then
    echo "tests/setup.sh: $file builds for $target, which tests/run.sh does not add (add it to its" \
      "\`rustup target add\` line and to the rust-toolchain.toml beside $file)" >&2
    undeclared=1
  fi
done < <(
  git ls-files -- '*.sh' '.ci/*' '*/.cargo/config.toml' '.cargo/config.toml' 2>/dev/null | while IFS= read -r file; do
    [[ -f $file ]] || continue
    # `|| true`: a file that names no target is the common case, not an error.
    { grep -o -- '--target[= ][[:space:]]*[a-z0-9_.-]*' "$file" | sed 's/--target[= ][[:space:]]*//' || true
      grep -o '^[[:space:]]*target[[:space:]]*=[[:space:]]*"[^"]*"' "$file" | sed 's/.*"\([^"]*\)"/\1/' || true
    } | sed "s|^|$file:|" || true
  done
)
((undeclared == 0)) || exit 1
