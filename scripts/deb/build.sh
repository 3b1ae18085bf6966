#!/usr/bin/env bash
# Builds server-monitor_VERSION_amd64.deb with dpkg-deb alone (`make deb`).
#
#   scripts/deb/build.sh BINARY [OUTDIR]
#
# VERSION is Cargo.toml's; DEB_VERSION overrides it (e.g. 0.1.0+test2).
# Contents: /usr/bin/server-monitor, the units in /lib/systemd/system (naming
# /usr/bin), /etc/server-monitor/server-monitor.env (conffile, 0600), the
# README; DEBIAN/ from this folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
binary=${1:?usage: build.sh BINARY [OUTDIR]}
out=${2:-.}
[ -f "$binary" ] || { echo "build.sh: no binary at $binary (make release)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "build.sh: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }
version=${DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$top/Cargo.toml" | head -1)}
[ -n "$version" ] || { echo "build.sh: no version in Cargo.toml" >&2; exit 1; }

tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
chmod 0755 "$tree"
install -d -m 0755 "$tree/DEBIAN" "$tree/usr/bin" "$tree/lib/systemd/system" \
  "$tree/usr/share/doc/server-monitor"
install -d -m 0750 "$tree/etc/server-monitor"
install -m 0755 "$binary" "$tree/usr/bin/server-monitor"
for unit in server-monitor.service server-monitor@.service; do
  sed 's|/usr/local/bin/server-monitor|/usr/bin/server-monitor|' "$top/scripts/$unit" \
    > "$tree/lib/systemd/system/$unit"
  chmod 0644 "$tree/lib/systemd/system/$unit"
done
install -m 0600 "$top/scripts/server-monitor.env.example" "$tree/etc/server-monitor/server-monitor.env"
install -m 0644 "$top/README.md" "$tree/usr/share/doc/server-monitor/README.md"
size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" "$here/control.in" > "$tree/DEBIAN/control"
install -m 0644 "$here/conffiles" "$tree/DEBIAN/conffiles"
for script in postinst prerm postrm; do install -m 0755 "$here/$script" "$tree/DEBIAN/$script"; done

mkdir -p "$out"
deb="$out/server-monitor_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$tree" "$deb" >/dev/null
echo "built $deb ($(wc -c < "$deb") bytes)"
