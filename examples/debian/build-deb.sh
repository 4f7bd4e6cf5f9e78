#!/usr/bin/env bash
# Builds target/deb/baton_<version>_<arch>.deb from release binaries: baton-node and
# baton, the systemd unit (Type=notify), /etc/baton/baton-node.toml (a conffile), man
# pages and bash/zsh/fish completions generated from the programs' own flags, and
# maintainer scripts that create the `baton` system user and /var/lib/baton.
#
#   examples/debian/build-deb.sh ARCH BIN_DIR [OUT_DIR]
#   ARCH: amd64 or arm64; BIN_DIR: where baton-node and baton are (target/release, or
#   target/aarch64-unknown-linux-gnu/release). STRIP names the strip for that
#   architecture (default strip); BATON_FOR_DOCS a `baton` that runs on this machine
#   (default BIN_DIR/baton), to write the man pages and completions.
set -euo pipefail
arch=${1:?ARCH: amd64 or arm64}
bin_dir=${2:?BIN_DIR: the directory holding baton-node and baton}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${3:-$root/target/deb}
strip=${STRIP:-strip}
docs_baton=${BATON_FOR_DOCS:-$bin_dir/baton}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)
[ -n "$version" ] || { echo "build-deb: no version in $root/Cargo.toml" >&2; exit 1; }
for binary in baton-node baton; do
    [ -x "$bin_dir/$binary" ] || { echo "build-deb: $bin_dir/$binary is missing: build it with cargo build --release first" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/baton" \
    "$pkg/usr/share/man/man1" "$pkg/usr/share/bash-completion/completions" \
    "$pkg/usr/share/zsh/vendor-completions" "$pkg/usr/share/fish/vendor_completions.d" \
    "$pkg/usr/share/doc/baton"
for binary in baton-node baton; do
    "$strip" -o "$pkg/usr/bin/$binary" "$bin_dir/$binary"
    chmod 0755 "$pkg/usr/bin/$binary"
done
# The Raspberry Pi unit, with the package's paths.
sed 's#/usr/local/bin/#/usr/bin/#g' "$root/examples/raspberry-pi/baton-node.service" >"$pkg/lib/systemd/system/baton-node.service"
install -m 0644 "$here/baton-node.toml" "$pkg/etc/baton/baton-node.toml"
"$docs_baton" package-files --out "$stage/generated" >/dev/null
for page in "$stage"/generated/man/*.1; do
    gzip -9n <"$page" >"$pkg/usr/share/man/man1/$(basename "$page").gz"
done
for name in baton baton-node; do
    install -m 0644 "$stage/generated/completions/$name.bash" "$pkg/usr/share/bash-completion/completions/$name"
    install -m 0644 "$stage/generated/completions/_$name" "$pkg/usr/share/zsh/vendor-completions/_$name"
    install -m 0644 "$stage/generated/completions/$name.fish" "$pkg/usr/share/fish/vendor_completions.d/$name.fish"
done
install -m 0644 "$root/README.md" "$pkg/usr/share/doc/baton/README.md"
install -m 0644 "$here/copyright" "$pkg/usr/share/doc/baton/copyright"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$pkg/DEBIAN/$script"
done
echo /etc/baton/baton-node.toml >"$pkg/DEBIAN/conffiles"
installed_kib=$(du -sk "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: baton
Version: $version
Architecture: $arch
Maintainer: Baton developers <baton@localhost>
Installed-Size: $installed_kib
Depends: passwd
Section: database
Priority: optional
Homepage: https://example.invalid/baton
Description: leader-follower log replication for edge devices
 Baton replicates a key-value log from one leader to its followers over QUIC
 with mutual TLS, fails over automatically with quorum votes and a fenced old
 leader, and writes to SD cards as little as it can. This package holds the
 daemon baton-node (with a systemd unit) and the operator tool baton.
CONTROL
mkdir -p "$out"
deb="$out/baton_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
