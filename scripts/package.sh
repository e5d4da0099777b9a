#!/usr/bin/env bash
# Builds the Debian packages with cargo-deb: `nebula-rs` (nebula, nebula-cert, nebula-ctl, the
# systemd units, an example config, man pages) and `nebula-provision`, into $TARGET/debian/.
#
#   scripts/package.sh [--profile release|dev] [--no-build]
#
# --profile dev packages the debug build the test suite already made (CI's package test does this
# to save a second build); releases use the default, release. --no-build packages what is built.
# Needs cargo-deb (`cargo install cargo-deb --locked`) and help2man (Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=${2:?--profile needs a value}; shift 2 ;;
        --profile=*) profile=${1#--profile=}; shift ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$profile" in
    release) profile_dir=release ;;
    dev) profile_dir=debug ;;
    *) echo "package.sh: --profile must be release or dev, not $profile" >&2; exit 2 ;;
esac
for tool in cargo-deb help2man; do
    command -v "$tool" >/dev/null || {
        echo "package.sh: $tool not found (cargo install cargo-deb --locked; apt-get install help2man)" >&2
        exit 1
    }
done

target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/$profile_dir
if [ "$build" = 1 ]; then
    cargo build --locked --profile "$profile" \
        -p nebula-node --bin nebula --bin nebula-ctl \
        -p nebula-cert --bin nebula-cert \
        -p nebula-provision --bin nebula-provision
fi
for b in nebula nebula-cert nebula-ctl nebula-provision; do
    [ -x "$bin/$b" ] || { echo "package.sh: $bin/$b is not built (drop --no-build)" >&2; exit 1; }
done

# Man pages from each program's own --help, so they never drift from it.
version=$("$bin/nebula-ctl" --version | awk '{print $2}')
man=$bin/man
mkdir -p "$man"
manpage() { # name, one-line description
    help2man --no-info --no-discard-stderr --version-string="$version" --name="$2" \
        --output="$man/$1.1" "$bin/$1"
    gzip -9nf "$man/$1.1"
}
manpage nebula "Nebula-compatible mesh overlay network daemon"
manpage nebula-cert "create and inspect Nebula certificates"
manpage nebula-ctl "query a running nebula node over its control socket"
manpage nebula-provision "inventory to Nebula PKI, host bundles, Ansible, Terraform and SSH apply"

out=$target/debian
mkdir -p "$out"
for pkg in nebula-node nebula-provision; do
    # Stripped: the release profile keeps line tables for profiling, which a package does not need.
    cargo deb --locked --no-build --strip --profile "$profile" -p "$pkg" --output "$out/"
done
ls -1 "$out"/*.deb
