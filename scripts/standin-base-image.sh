#!/usr/bin/env bash
# A STAND-IN for docker.io/library/python:3.11-slim, made from Debian packages, for
# `make image-test` on machines that cannot pull from Docker Hub. It is never pushed
# anywhere and is not the official image; DEPLOYMENT.md lists how the two differ.
#
# What it is: a bookworm root filesystem from `debootstrap --variant=minbase` (from this
# machine's configured Debian mirror) with Debian's python3.11, pip and venv, laid out as
# the official image has them: `python`, `python3`, `pip`, `pip3` in /usr/local/bin,
# pip usable without Debian's externally-managed guard, LANG=C.UTF-8, CMD python3, and
# apt pointed at the same mirror (the Dockerfile's runtime stage runs apt-get).
#
# The root filesystem is cached as a tarball in $YTPROXY_IMAGE_CACHE (default
# /var/cache/ytproxy-image), keyed by a hash of this script, and imported into buildah's
# local storage under exactly the name the Dockerfile's FROM resolves to. Runs as root.
#
# Usage: scripts/standin-base-image.sh   (prints the image name it made or found)
set -euo pipefail

IMAGE=docker.io/library/python:3.11-slim
SUITE=bookworm
CACHE=${YTPROXY_IMAGE_CACHE:-/var/cache/ytproxy-image}
key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
tarball=$CACHE/python-3.11-slim-standin-$key.tar.gz

# The first deb.debian.org-style URI in apt's sources: the mirror this machine uses.
mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -v security | head -n 1 | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
    | awk '{print $1}')
  echo "${uri:-http://deb.debian.org/debian}"
}

make_rootfs() {
  local root=$1 mirror_url
  mirror_url=$(mirror)
  echo "standin: debootstrap $SUITE from $mirror_url" >&2
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    "$SUITE" "$root" "$mirror_url" >/dev/null
  # apt inside the image uses the same mirror, with updates and security like the
  # official image's /etc/apt/sources.list.d/debian.sources.
  rm -f "$root/etc/apt/sources.list"
  local security=${mirror_url%/debian}/debian-security
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror_url
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # The official image's layout: its own CPython in /usr/local, so these names exist
  # there and pip installs without --break-system-packages.
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python"
  ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip3"
  # Slim like the official image: no apt lists, caches, docs or man pages.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/log/*.log
  # debootstrap copies the host's resolv.conf and hostname; buildah provides its own.
  rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
}

if buildah inspect --type image --format '{{index .OCIv1.Config.Labels "org.ytproxy.standin"}}' \
  "$IMAGE" 2>/dev/null | grep -qx "$key"; then
  echo "$IMAGE"
  exit 0
fi

mkdir -p "$CACHE"
if [[ ! -s $tarball ]]; then
  work=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  make_rootfs "$work/root"
  tar -C "$work/root" --numeric-owner -czf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  rm -rf "$work"
  trap - EXIT
  # Older stand-ins (made by an earlier version of this script) are no use any more.
  find "$CACHE" -maxdepth 1 -name 'python-3.11-slim-standin-*.tar.gz' ! -name "${tarball##*/}" -delete
fi

ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah add --quiet "$ctr" "$tarball" / >/dev/null
buildah config \
  --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --cmd python3 \
  --label org.ytproxy.standin="$key" \
  --label org.opencontainers.image.description="STAND-IN for python:3.11-slim built from Debian bookworm packages by ytproxy scripts/standin-base-image.sh; not the official image" \
  "$ctr"
buildah commit --quiet --format docker --rm "$ctr" "$IMAGE" >/dev/null
trap - EXIT
echo "$IMAGE"
