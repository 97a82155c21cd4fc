#!/bin/sh
# Bootstrap Debian into $ROOTFS with mmdebstrap, from the mirror of the host's apt sources.
#
# The builder's sandbox cannot mount or create device nodes, and $ROOTFS/dev and /proc are
# empty: root mode, without mounting anything in the chroot (chroot/mount) or creating
# devices (output/mknod); $ROOTFS is not empty (dgr's /dgr and mount points: check/empty).
# apt checks each Release file against the Debian archive keyring, as for any install.
set -eu
"$ACI_HOME/host-sources" bookworm /host/apt > /tmp/sources.list
echo "Debian sources (from the host's apt):"
sed 's/^/  /' /tmp/sources.list
mmdebstrap --mode=root --variant=minbase \
  --skip=check/empty,chroot/mount,output/mknod \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  --customize-hook='rm -rf "$1"/dev/*' \
  bookworm "$ROOTFS" - < /tmp/sources.list
version=$(cat "$ROOTFS/etc/debian_version")
printf 'default:\n  debian: {version: "%s"}\n' "$version" > /dgr/builder/attributes/debian.yml
echo "Debian $version"
