"""Where the gateway's Kubernetes client comes from, and how its failures read."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError

from clusterlink.errors import StoreError
from clusterlink.kube import ExportCR, failure, http_status, load_access
from tests.k8s.apiserver import KubeAPI

pytestmark = pytest.mark.k8s


def kubeconfig(path: Path, *, server: str, user: bool = True) -> Path:
    context = {"cluster": "c", **({"user": "u"} if user else {})}
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "contexts": [{"name": "ctx", "context": context}],
                "users": [{"name": "u", "user": {"token": "secret"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


def test_kube_api_url_needs_no_credentials(api):
    access = load_access(api_url=api.url)
    assert (access.server, access.source) == (api.url, f"--kube-api {api.url}")
    with access.sync_client() as client:
        body = {"metadata": {"name": "a", "namespace": "default"}, "spec": {}}
        created = client.create(ExportCR.from_dict(body))
        assert created["metadata"]["uid"]
        assert client.get(ExportCR, "a", namespace="default")["metadata"]["name"] == "a"


def test_a_kubeconfig_file_gives_its_current_context(tmp_path):
    access = load_access(kubeconfig=kubeconfig(tmp_path / "config", server="https://k:6443"))
    assert access.server == "https://k:6443"
    assert access.source == f"kubeconfig {tmp_path / 'config'}"


def test_kubeconfig_comes_from_the_environment_outside_a_pod(tmp_path):
    path = kubeconfig(tmp_path / "env-config", server="https://e:6443")
    access = load_access(environ={"KUBECONFIG": str(path)})
    assert access.server == "https://e:6443"


def test_in_a_pod_the_service_account_is_used(tmp_path):
    (tmp_path / "token").write_text("token-value")
    (tmp_path / "namespace").write_text("clusterlink-system")
    (tmp_path / "ca.crt").write_text("")
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    access = load_access(service_account=tmp_path, environ=environ)
    assert access.server == "https://10.0.0.1:443"
    assert access.source == f"the service account at {tmp_path}"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"api_url": "127.0.0.1:8001"}, "is not an http:// or https:// URL"),
        ({"api_url": "http://x", "kubeconfig": Path("k")}, "use one of them"),
        ({"kubeconfig": Path("/nonexistent/config")}, "cannot read kubeconfig"),
        (
            {"service_account": Path("/nonexistent"), "environ": {"KUBERNETES_SERVICE_HOST": "h"}},
            r"at /nonexistent is unusable \(/nonexistent/token, /nonexistent/ca.crt missing\)",
        ),
    ],
)
def test_unusable_configuration_is_one_clear_error(arguments, message):
    with pytest.raises(StoreError, match=message) as caught:
        load_access(**arguments)
    assert "\n" not in str(caught.value)


def test_a_context_without_a_user_is_refused_before_lightkube_asserts(tmp_path):
    path = kubeconfig(tmp_path / "config", server="http://k", user=False)
    with pytest.raises(StoreError, match="names no user; add one, or pass --kube-api URL"):
        load_access(kubeconfig=path)


def test_an_answer_reads_as_status_and_reason(api: KubeAPI):
    with load_access(api_url=api.url).sync_client() as client, pytest.raises(ApiError) as caught:
        client.get(ExportCR, "missing", namespace="default")
    assert http_status(caught.value) == 404
    error = failure(caught.value, doing="read export default/missing", server=api.url)
    assert str(error) == (
        f"cannot read export default/missing: the Kubernetes API at {api.url} answered 404 "
        'NotFound: exports.clusterlink.net "missing" not found'
    )


def test_no_answer_reads_as_unreachable():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    with load_access(api_url=url).sync_client() as client, pytest.raises(Exception) as caught:
        client.get(ExportCR, "a", namespace="default")
    assert http_status(caught.value) is None
    message = str(failure(caught.value, doing="read export default/a", server=url))
    assert message.startswith(f"cannot read export default/a: the Kubernetes API at {url} is ")
    assert message.endswith("unreachable") or "unreachable (" in message
