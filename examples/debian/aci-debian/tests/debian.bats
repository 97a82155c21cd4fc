#!/usr/bin/env bats

@test "it is Debian bookworm" {
  grep -q '^VERSION_CODENAME=bookworm$' /etc/os-release
}

@test "every package dpkg knows is installed" {
  run dpkg-query -W -f '${db:Status-Abbrev}\n'
  [ "$status" -eq 0 ]
  [ -z "$(printf '%s\n' "$output" | grep -v '^ii ')" ]
}

@test "apt verifies the archive: the keyring is there, no source is trusted blindly" {
  [ -s /usr/share/keyrings/debian-archive-keyring.gpg ]
  grep -q '^deb .* bookworm main' /etc/apt/sources.list
  ! grep -rq 'trusted=yes' /etc/apt/sources.list /etc/apt/sources.list.d
}
