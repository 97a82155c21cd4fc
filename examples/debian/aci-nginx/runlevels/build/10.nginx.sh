#!/bin/sh
# Install nginx from the Debian archive (the base's apt sources), keep no package lists, and
# tell the manifest which version it is.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends nginx
apt-get clean
rm -f /var/lib/apt/lists/*_*  # what apt-get update fetched (the base keeps lists/lock)
# The configuration comes from the templates; the site Debian enables is not used.
rm -f /etc/nginx/sites-enabled/default
version=$(dpkg-query -W -f '${Version}' nginx)
printf 'default:\n  nginx: {version: "%s"}\n' "$version" > /dgr/builder/attributes/nginx.yml
echo "nginx $version"
