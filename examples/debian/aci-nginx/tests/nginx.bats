#!/usr/bin/env bats

@test "nginx serves the page rendered from the attributes" {
  run wget -q -O - http://127.0.0.1:80/
  [ "$status" -eq 0 ]
  [[ "$output" == *"<h1>Hello world</h1>"* ]]
}

@test "the page names the version the build found" {
  run wget -q -O - http://127.0.0.1:80/
  [[ "$output" == *"nginx $(dpkg-query -W -f '${Version}' nginx)"* ]]
}

@test "the configuration is the template's and nginx accepts it" {
  grep -q 'worker_processes 2;' /etc/nginx/nginx.conf
  /usr/sbin/nginx -t -q -c /etc/nginx/nginx.conf
}

@test "workers run as www-data" {
  run sh -c "ps -o user,args | grep '[n]ginx: worker'"
  [ "$status" -eq 0 ]
  [[ "$output" == *www-data* ]]
}
