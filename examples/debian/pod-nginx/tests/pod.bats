#!/usr/bin/env bats
# Run from the pod's tester container, in the pod's network namespace.

@test "nginx answers on the pod's loopback with the pod's attributes" {
  run wget -q -O - http://127.0.0.1:80/
  [ "$status" -eq 0 ]
  [[ "$output" == *"<h1>Hello pod</h1>"* ]]
}

@test "the client copied the page over 127.0.0.1" {
  run wget -q -O - http://127.0.0.1:8081/index.html
  [ "$status" -eq 0 ]
  [[ "$output" == *"<h1>Hello pod</h1>"* ]]
}
