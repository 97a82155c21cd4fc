#!/bin/sh
# Ready when the fetcher serves its copy.
wget -q -O /dev/null http://127.0.0.1:8081/index.html
