#!/usr/bin/env bash
# Build (or reuse) a Debian trixie chroot holding GIMP 3 with its Python plug-in support, so the GIMP plug-in can
# be tested in the real application on hosts whose own distribution ships only GIMP 2.10 or none.
#
#   tools/gimp_chroot.sh [ROOT]      # default ROOT: .cache/gimp-chroot under the repository
#
# Needs root and the host's `debootstrap` (apt-get install debootstrap). Idempotent: a finished chroot carries a
# stamp naming its package list and is reused as is; a half-built one is discarded and rebuilt. Concurrent calls
# wait on a lock instead of building twice. Prints the chroot's path on success.
# Environment: DRAGGAN_DEBIAN_MIRROR (default: debootstrap's own), DRAGGAN_GIMP_SUITE (default: trixie).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${1:-$here/.cache/gimp-chroot}"
suite="${DRAGGAN_GIMP_SUITE:-trixie}"
mirror="${DRAGGAN_DEBIAN_MIRROR:-}"
packages="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4 python3 python3-zmq python3-msgpack"
stamp_text="suite=$suite packages=$packages"
stamp="$root/.draggan-gimp-chroot"

log() { printf 'gimp_chroot: %s\n' "$*" >&2; }

if [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_text" ]]; then
    echo "$root"
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    log "building the GIMP 3 chroot needs root (chroot, debootstrap)"
    exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    log "debootstrap is missing on this host: apt-get install -y debootstrap"
    exit 3
fi

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9
# Another process may have finished the build while this one waited for the lock.
if [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_text" ]]; then
    echo "$root"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$root/usr/bin/apt-get" || ! -f "$root/.draggan-debootstrap-done" ]]; then
    rm -rf --one-file-system "$root"
    log "debootstrap $suite into $root (about a minute)"
    # shellcheck disable=SC2086
    debootstrap --variant=minbase "$suite" "$root" $mirror >"$root.debootstrap.log" 2>&1 || {
        log "debootstrap failed; see $root.debootstrap.log"
        tail -n 20 "$root.debootstrap.log" >&2
        exit 4
    }
    touch "$root/.draggan-debootstrap-done"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
log "installing $packages (about a minute)"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive bash -c \
    "apt-get update -q && apt-get install -y -q --no-install-recommends $packages && apt-get clean" \
    >"$root.apt.log" 2>&1 || {
    log "package installation failed; see $root.apt.log"
    tail -n 20 "$root.apt.log" >&2
    exit 5
}
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin gimp-console-3.0 --version >&2
printf '%s' "$stamp_text" >"$stamp"
log "ready in $(($(date +%s) - start)) s"
echo "$root"
