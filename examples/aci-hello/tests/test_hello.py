"""Python tests of the aci-hello image, next to its bats tests (fixtures from pytest_dgr)."""


def test_config_is_templated(dgr_container):
    conf = dgr_container.read_file("/etc/hello.conf")
    assert "greeting=Hello\nwho=world\nport=8080\n" in conf
    assert "mode=test" in conf


def test_server_answers(dgr_container):
    result = dgr_container.exec(["/dgr/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
    assert result.returncode == 0, result.output
    assert result.output.strip() == "<h1>Hello world</h1>"


def test_build_runlevel_ran(dgr_container, dgr_image):
    expected = f"built for aci-hello:{dgr_image.name.version}"
    assert dgr_container.read_file("/srv/www/build.txt").strip() == expected


def test_port_is_declared(dgr_container):
    assert dgr_container.ports() == {"http": 8080}
