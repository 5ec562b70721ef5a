#!/usr/bin/env bash
# Add Krita 5.2 (Debian trixie's package) to the trixie chroot that tools/gimp_chroot.sh builds, so the Krita
# plugin is also tested in the Krita most painters run, not only in the host's Krita (5.1 on Debian bookworm).
#
#   tools/krita_chroot.sh [ROOT]     # default ROOT: .cache/gimp-chroot under the repository (the same chroot)
#
# Builds the chroot first through tools/gimp_chroot.sh when it is missing (reused as is when it is there), then
# installs Krita, its PyQt5 and Xvfb into it, without recommends. Idempotent: a finished step carries its own stamp
# (.draggan-krita-chroot, naming the package list) beside the GIMP one and is not repeated; the chroot is never
# rebuilt here, so GIMP tests using it meanwhile keep working. Concurrent calls wait on the same lock as
# gimp_chroot.sh. Needs root. Prints the chroot's path on success.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${1:-$here/.cache/gimp-chroot}"
# krita: 5.2.x with its kritarunner; python3-pyqt5: the PyQt5 its Python plugins import (only recommended by the
# package); xvfb + xauth: a display for the full application, started inside the chroot by xvfb-run.
packages="krita python3-pyqt5 xvfb xauth"
stamp_text="packages=$packages"
stamp="$root/.draggan-krita-chroot"

log() { printf 'krita_chroot: %s\n' "$*" >&2; }

if [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_text" ]]; then
    echo "$root"
    exit 0
fi
# The chroot itself (its own lock; it must be released before this script takes the same one below).
bash "$here/tools/gimp_chroot.sh" "$root" >/dev/null

exec 9>"$root.lock"
flock 9
if [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_text" ]]; then
    echo "$root"
    exit 0
fi

start=$(date +%s)
cp /etc/resolv.conf "$root/etc/resolv.conf"
log "installing $packages into $root (a minute or two)"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive bash -c \
    "apt-get update -q && apt-get install -y -q --no-install-recommends $packages && apt-get clean" \
    >"$root.krita-apt.log" 2>&1 || {
    log "package installation failed; see $root.krita-apt.log"
    tail -n 20 "$root.krita-apt.log" >&2
    exit 5
}
for tool in krita kritarunner xvfb-run; do
    if [[ ! -x "$root/usr/bin/$tool" ]]; then
        log "the chroot has no /usr/bin/$tool after the installation; see $root.krita-apt.log"
        exit 6
    fi
done
version="$(chroot "$root" /usr/bin/dpkg-query -W -f '${Version}' krita)"
log "Krita $version ready in $(($(date +%s) - start)) s"
printf '%s' "$stamp_text" >"$stamp"
echo "$root"
