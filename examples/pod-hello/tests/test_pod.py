"""Python tests of the pod-hello pod (fixtures from pytest_dgr): one container per app."""


def test_every_app_runs(dgr_pod):
    assert sorted(dgr_pod.apps) == ["fetcher", "web"]


def test_pod_attributes_reach_every_app(dgr_pod):
    assert "who=pod" in dgr_pod["web"].read_file("/etc/hello.conf")
    assert "who=pod" in dgr_pod["fetcher"].read_file("/etc/hello.conf")


def test_fetcher_kept_its_copy(dgr_pod):
    assert dgr_pod["fetcher"].read_file("/srv/copy/index.html").strip() == "<h1>Hello pod</h1>"
