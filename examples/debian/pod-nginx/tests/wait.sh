#!/bin/sh
# Ready when the client serves its copy of nginx's page.
wget -q -O /dev/null http://127.0.0.1:8081/index.html
