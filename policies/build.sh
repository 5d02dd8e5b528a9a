#!/usr/bin/env bash
# Builds the shipped policies and handlers and the runtime's test guests as
# wasm32-wasip2 components with the workspace's `policy` profile, and copies
# the shipped ones where they are committed (policies/hearth.wasm,
# policies/sni-table.wasm, policies/web-gate.wasm, handlers/lk-jwt.wasm).
#
#   policies/build.sh                 build everything, update policies/*.wasm
#   policies/build.sh --check         build, then compare byte for byte with the
#                                     committed .wasm files; fail naming any
#                                     stale file (nothing is overwritten)
#   policies/build.sh PKG...          build only these packages (shipped ones
#                                     among them are copied or checked)
#
# Test guests (tests/guests/*) are built when their crate exists; one that does
# not compile is reported and skipped, so the shipped policies still build.
# Packages named on the command line must all build.
#
# Builds are reproducible: the workspace path and $CARGO_HOME are remapped to
# fixed prefixes, so two checkouts in different directories produce identical
# bytes for the same sources, Cargo.lock and toolchain (rust-toolchain.toml).
set -euo pipefail

readonly TARGET=wasm32-wasip2
readonly PROFILE=policy
# What paths in the artifacts are rewritten to (panic locations, if any).
readonly WORKSPACE_PREFIX=/hearth-wasm-edge
readonly CARGO_HOME_PREFIX=/cargo

# package:artifact in target dir:committed file (from the workspace root)
readonly SHIPPED=(
    "hearth-policy:hearth_policy.wasm:policies/hearth.wasm"
    "sni-table-policy:sni_table_policy.wasm:policies/sni-table.wasm"
    "web-gate-policy:web_gate_policy.wasm:policies/web-gate.wasm"
    "lk-jwt-handler:lk_jwt_handler.wasm:handlers/lk-jwt.wasm"
)
# package:crate directory
readonly TEST_GUESTS=(
    "guest-trap:tests/guests/trap"
    "guest-spin:tests/guests/spin"
    "guest-hog:tests/guests/hog"
    "guest-wasi-probe:tests/guests/wasi-probe"
    "guest-http-probe:tests/guests/http-probe"
)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(dirname "$here")"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
cargo_home="$(cd "$cargo_home" && pwd)"

die() { echo "build.sh: $*" >&2; exit 1; }

check=0
requested=()
while (($#)); do
    case "$1" in
        --check) check=1 ;;
        -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) requested+=("$1") ;;
    esac
    shift
done

# --- which packages ---
policies=()
guests=()
if ((${#requested[@]})); then
    for pkg in "${requested[@]}"; do
        case " ${SHIPPED[*]} " in
            *" $pkg:"*) policies+=("$pkg") ;;
            *) guests+=("$pkg") ;;
        esac
    done
else
    for entry in "${SHIPPED[@]}"; do policies+=("${entry%%:*}"); done
    for entry in "${TEST_GUESTS[@]}"; do
        if [[ -f "$workspace/${entry#*:}/Cargo.toml" ]]; then
            guests+=("${entry%%:*}")
        fi
    done
fi

# --- reproducible flags ---
# CARGO_ENCODED_RUSTFLAGS (0x1f-separated) takes precedence over every other
# rustflags source and survives spaces in paths. With --target it applies to
# the wasm crates only, not to build scripts and proc macros.
sep=$'\x1f'
export CARGO_ENCODED_RUSTFLAGS="--remap-path-prefix=${workspace}=${WORKSPACE_PREFIX}${sep}--remap-path-prefix=${cargo_home}=${CARGO_HOME_PREFIX}"

target_dir="$(cd "$workspace" && cargo metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
[[ -n "$target_dir" ]] || die "could not find cargo's target directory"
out="$target_dir/$TARGET/$PROFILE"

build() {
    (cd "$workspace" && cargo build --profile "$PROFILE" --target "$TARGET" "$@")
}

# One cargo invocation per policy: features unify within an invocation, and
# the SDK's `http` feature (wanted by an `http-policy` such as web-gate)
# would otherwise turn every policy built alongside it into one.
for pkg in "${policies[@]}"; do
    build -p "$pkg" || die "$pkg failed to build"
done

skipped=()
for pkg in "${guests[@]}"; do
    build -p "$pkg" || skipped+=("$pkg")
done

# --- copy or check the shipped artifacts ---
stale=()
for entry in "${SHIPPED[@]}"; do
    IFS=: read -r pkg artifact shipped <<<"$entry"
    case " ${policies[*]} " in *" $pkg "*) ;; *) continue ;; esac
    built="$out/$artifact"
    [[ -f "$built" ]] || die "$pkg built no $built"
    if ((check)); then
        if ! cmp -s "$built" "$workspace/$shipped"; then
            stale+=("$shipped")
        fi
    else
        cp "$built" "$workspace/$shipped"
        echo "$shipped: $(wc -c <"$workspace/$shipped") bytes"
    fi
done

if ((${#skipped[@]})); then
    echo "build.sh: test guests that did not build: ${skipped[*]}" >&2
    ((${#requested[@]} == 0)) || die "requested packages failed to build: ${skipped[*]}"
fi
if ((${#stale[@]})); then
    die "stale (rebuild with policies/build.sh and commit): ${stale[*]}"
fi
if ((check)); then
    echo "policies/*.wasm and handlers/*.wasm are up to date"
fi
