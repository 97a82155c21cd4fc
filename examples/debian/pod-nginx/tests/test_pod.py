"""Python tests of the nginx pod (fixtures from pytest_dgr): one container per app."""


def test_both_apps_run(dgr_pod):
    assert sorted(dgr_pod.apps) == ["client", "web"]


def test_the_web_app_is_the_nginx_image(dgr_pod):
    version = dgr_pod["web"].exec(["dpkg-query", "-W", "-f", "${Version}", "nginx"]).output.strip()
    assert f"nginx {version}" in dgr_pod["web"].read_file("/var/www/html/index.html")


def test_the_client_kept_its_copy(dgr_pod):
    assert "<h1>Hello pod</h1>" in dgr_pod["client"].read_file("/srv/copy/index.html")
