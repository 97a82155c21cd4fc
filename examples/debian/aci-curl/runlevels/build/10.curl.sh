#!/bin/sh
# Install curl from the Debian archive; its version is the image's.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends curl
apt-get clean
rm -f /var/lib/apt/lists/*_*
version=$(dpkg-query -W -f '${Version}' curl)
printf 'default:\n  curl: {version: "%s"}\n' "$version" > /dgr/builder/attributes/curl.yml
