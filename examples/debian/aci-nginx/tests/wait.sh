#!/bin/sh
# Ready when nginx serves the page (busybox's wget: Debian's minbase has no HTTP client).
wget -q -O /dev/null http://127.0.0.1:80/
