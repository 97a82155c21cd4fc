#!/dgr/bin/busybox sh
# Runs inside the image while it is built.
set -e
/dgr/bin/busybox mkdir -p /srv/www
echo "built for $ACI_NAME:$ACI_VERSION" > /srv/www/build.txt
