#!/bin/sh
# Ready when the web server answers.
wget -q -O /dev/null http://127.0.0.1:8080/
