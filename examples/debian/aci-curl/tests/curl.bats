#!/usr/bin/env bats

@test "curl runs on the base from the registry" {
  run curl --version
  [ "$status" -eq 0 ]
  [[ "$output" == curl* ]]
}

@test "the base is the Debian family's" {
  grep -q '^VERSION_CODENAME=bookworm$' /etc/os-release
  curl -fsS file:///etc/debian_version
}
