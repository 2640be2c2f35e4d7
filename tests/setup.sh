#!/usr/bin/env bash
# Installs what the tests and the benchmark need that a fresh machine lacks, idempotently:
#   - Debian packages (the real servers the end-to-end tests start, QEMU, Chromium and its driver);
#   - for every rust-toolchain.toml in the repository (the root workspace and each board), its toolchain's
#     targets and components. rustup installs a toolchain file's targets and components only when it
#     installs the toolchain itself; when the named toolchain is already there (as on a machine that came
#     with it), they are never added, so we add them explicitly.
# Then checks that every target the repository builds for (`--target X` in a script, `target = "X"` in a
# .cargo/config.toml) is named by a rust-toolchain.toml, so this script installs it; a board that forgets
# fails here, naming its file, instead of on the next fresh machine.
#
# Usage: tests/setup.sh [--bench]   (--bench: also what bench/run.sh uses for profiles, linux-perf)
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

declared_targets=()
for file in "${toolchain_files[@]}"; do
  channel=$(toml_string "$file" channel)
  if [[ -z $channel ]]; then
    echo "tests/setup.sh: $file names no toolchain channel" >&2
    exit 1
  fi
  mapfile -t targets < <(toml_array "$file" targets)
  mapfile -t components < <(toml_array "$file" components)
  declared_targets+=("${targets[@]}")
  # `rustup toolchain install` is a no-op when the toolchain is there; the adds are no-ops when the
  # target or component is already installed.
  rustup toolchain install "$channel" --profile minimal --no-self-update >/dev/null 2>&1 ||
    rustup toolchain install "$channel" --profile minimal
  if ((${#targets[@]})); then
    rustup target add --toolchain "$channel" "${targets[@]}" 2>&1 | grep -v 'is up to date' || true
  fi
  if ((${#components[@]})); then
    rustup component add --toolchain "$channel" "${components[@]}" 2>&1 | grep -v 'is up to date' || true
  fi
  # Verify rather than trust the exit codes above (grep swallowed them), and look at the files: rustup's
  # list can say a target is installed when its library is gone (two toolchain names sharing one folder,
  # one of them changed), and then the build fails with "can't find crate for `core`". Reinstall then.
  sysroot=$(rustup run "$channel" rustc --print sysroot)
  installed_targets=$(rustup target list --installed --toolchain "$channel")
  for target in "${targets[@]}"; do
    if ! grep -qx "$target" <<<"$installed_targets" || [[ ! -d $sysroot/lib/rustlib/$target/lib ]]; then
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
      echo "tests/setup.sh: component $component of $file did not install for $channel" >&2
      exit 1
    }
  done
done

# --- Every target built for is declared ------------------------------------------------------------
# Targets named by scripts and cargo configs. A script passes `--target X`; a config sets `target = "X"`.
undeclared=0
while IFS=: read -r file target; do
  [[ -z $target ]] && continue
  if ! printf '%s\n' "${declared_targets[@]}" | grep -qx "$target"; then
    echo "tests/setup.sh: $file builds for $target, which no rust-toolchain.toml names (add it to the" \
      "targets of the rust-toolchain.toml beside it, so a fresh machine installs it)" >&2
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
