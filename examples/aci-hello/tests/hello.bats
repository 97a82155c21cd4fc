#!/usr/bin/env bats

@test "the page is rendered from the attributes" {
  run cat /srv/www/index.html
  [ "$status" -eq 0 ]
  [ "$output" = "<h1>Hello world</h1>" ]
}

@test "the server answers" {
  run wget -q -O - http://127.0.0.1:8080/
  [ "$status" -eq 0 ]
  [[ "$output" == *"Hello world"* ]]
}

@test "files/ are in the image" {
  grep -q "Welcome to aci-hello" /etc/motd
}

@test "the tester's environment wins over the app's" {
  [ "$HELLO_MODE" = test ]
}
