"""How the gateway reaches the Kubernetes API: configuration, clients, the resource classes of
our CRDs, and the one place where the client library's errors become ours.

Configuration, first match wins (DESIGN §9):

1. ``--kube-api URL``: plain HTTP(S) to that URL without credentials (tests, ``kubectl
   proxy``). Environment proxies are ignored: the URL is dialled as given.
2. ``--kubeconfig FILE``: that file's current context.
3. In a pod (``KUBERNETES_SERVICE_HOST`` set): the service account's token and CA. The token
   is read from its file, and again after a 401, so the kubelet's rotation is followed.
4. Otherwise ``$KUBECONFIG`` or ``~/.kube/config``.

Both clients are lightkube's (docs/kubernetes.md says why): the async one for the informers
on the event loop, the sync one for the store's writes, which the control plane makes from a
worker thread. Every write names the field manager ``clusterlink``.

Never here: reading or logging credentials (lightkube holds them), retrying (the informers
back off; a write fails to its caller), or Kubernetes semantics (what to write is the
store's business). Errors: ``failure`` turns whatever the client raised into a one-line
``StoreError`` naming what was being done and the HTTP status; ``http_status`` lets callers
decide on the status (409, 404, 410) before that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import httpx2
import msgspec
from lightkube import ApiError, AsyncClient, Client
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG, SERVICE_ACCOUNT, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.core.exceptions import ConfigError
from lightkube.generic_resource import (
    GenericGlobalResource,
    GenericNamespacedResource,
    create_global_resource,
    create_namespaced_resource,
)

from clusterlink.api import API_VERSION, KindName
from clusterlink.errors import StoreError

__all__ = [
    "CLIENT_ERRORS",
    "CRD_CLASSES",
    "FIELD_MANAGER",
    "GROUP",
    "VERSION",
    "AccessPolicyCR",
    "ApiAccess",
    "CustomResource",
    "ExportCR",
    "ImportCR",
    "PeerCR",
    "PrivilegedAccessPolicyCR",
    "failure",
    "http_status",
    "load_access",
]

GROUP, VERSION = API_VERSION.split("/")
FIELD_MANAGER: Final = "clusterlink"
DEFAULT_TIMEOUT_S: Final = 10.0

# The CRDs as lightkube classes; each has ``.Status`` for the status subresource. Peers are
# namespaced in Kubernetes (they live in ClusterLink's namespace, docs/kubernetes.md) although
# a Peer's key in the resource model has no namespace.
PeerCR = create_namespaced_resource(GROUP, VERSION, "Peer", "peers")
ExportCR = create_namespaced_resource(GROUP, VERSION, "Export", "exports")
ImportCR = create_namespaced_resource(GROUP, VERSION, "Import", "imports")
AccessPolicyCR = create_namespaced_resource(GROUP, VERSION, "AccessPolicy", "accesspolicies")
PrivilegedAccessPolicyCR = create_global_resource(
    GROUP, VERSION, "PrivilegedAccessPolicy", "privilegedaccesspolicies"
)
CustomResource: TypeAlias = type[GenericNamespacedResource] | type[GenericGlobalResource]
CRD_CLASSES: Final[Mapping[KindName, CustomResource]] = {
    "Peer": PeerCR,
    "Export": ExportCR,
    "Import": ImportCR,
    "AccessPolicy": AccessPolicyCR,
    "PrivilegedAccessPolicy": PrivilegedAccessPolicyCR,
}

# What the clients raise for a failed request: an HTTP error (lightkube's ApiError is one), a
# configuration problem met late (a token file gone), or an answer that is not JSON.
CLIENT_ERRORS: Final = (httpx2.HTTPError, ConfigError, msgspec.DecodeError, OSError)


@dataclass(frozen=True, slots=True)
class ApiAccess:
    """One API server and how to authenticate to it; makes the clients."""

    config: KubeConfig
    server: str  # its URL, for messages
    source: str  # where the configuration came from, for messages
    trust_env: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S

    def async_client(self) -> AsyncClient:
        return AsyncClient(self.config, **self._options())

    def sync_client(self) -> Client:
        return Client(self.config, **self._options())

    def _options(self) -> dict[str, Any]:
        return {
            "timeout": httpx2.Timeout(self.timeout_s),
            "field_manager": FIELD_MANAGER,
            "trust_env": self.trust_env,
        }


def load_access(
    *,
    api_url: str | None = None,
    kubeconfig: Path | None = None,
    service_account: Path = Path(SERVICE_ACCOUNT),
    environ: Mapping[str, str] = os.environ,
) -> ApiAccess:
    """The API to use, in the order of the module docstring; ``StoreError`` if it is unusable."""
    if api_url is not None and kubeconfig is not None:
        raise StoreError("both --kube-api and --kubeconfig were given; use one of them")
    if api_url is not None:
        if not api_url.startswith(("http://", "https://")):
            raise StoreError(
                f"--kube-api {api_url!r} is not an http:// or https:// URL; "
                "give the API server's URL, e.g. http://127.0.0.1:8001"
            )
        # An empty User: lightkube's client insists on one (KubeConfig.from_server gives none).
        config = KubeConfig.from_one(cluster=Cluster(server=api_url), user=User())
        return _checked(config, f"--kube-api {api_url}", trust_env=False)
    if kubeconfig is not None:
        return _checked(_read_kubeconfig(kubeconfig), f"kubeconfig {kubeconfig}")
    if "KUBERNETES_SERVICE_HOST" in environ:
        config = _service_account(service_account, environ)
        return _checked(config, f"the service account at {service_account}")
    path = Path(environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG).expanduser()
    return _checked(_read_kubeconfig(path), f"kubeconfig {path}")


def _service_account(directory: Path, environ: Mapping[str, str]) -> KubeConfig:
    """As lightkube's ``from_service_account``, but reading the environment given (so that
    tests can give one) and naming only the token's file, which is read again on a 401."""
    host, port = environ["KUBERNETES_SERVICE_HOST"], environ.get("KUBERNETES_SERVICE_PORT", "443")
    token, ca = directory / "token", directory / "ca.crt"
    missing = [str(path) for path in (token, ca) if not path.is_file()]
    if missing:
        raise StoreError(
            f"running in a pod, but its service account at {directory} is unusable "
            f"({', '.join(missing)} missing); mount the service account token or pass --kubeconfig"
        )
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return KubeConfig.from_one(
        cluster=Cluster(server=server, certificate_auth=str(ca)), user=User(token_file=str(token))
    )


def _read_kubeconfig(path: Path) -> KubeConfig:
    try:
        return KubeConfig.from_file(path)
    except (ConfigError, OSError, ValueError, KeyError, TypeError) as exc:
        # ValueError covers YAML errors; KeyError/TypeError a file without clusters/contexts
        raise StoreError(
            f"cannot read kubeconfig {path} ({exc}); pass --kubeconfig with a valid file "
            "or --kube-api URL"
        ) from exc


def _checked(config: KubeConfig, source: str, *, trust_env: bool = True) -> ApiAccess:
    """The configuration's current context, resolved now so that a broken one fails at start."""
    try:
        single = config.get()
    except (ConfigError, KeyError) as exc:
        raise StoreError(
            f"{source} has no usable current context ({exc}); set one with "
            "`kubectl config use-context` or pass --kube-api URL"
        ) from exc
    if single is None or single.user is None:
        # lightkube's clients refuse a context without a user ("Missing user")
        raise StoreError(
            f"{source}: its current context names no user; add one, or pass --kube-api URL "
            "for an API that needs no credentials"
        )
    return ApiAccess(config, single.cluster.server, source, trust_env=trust_env)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status the API answered with, if the failure was an answer at all."""
    if isinstance(exc, ApiError):
        return exc.status.code
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code
    return None


def failure(exc: BaseException, *, doing: str, server: str) -> StoreError:
    """One line for a failed request: what was being done, and the API's answer or why there
    was none. ``doing`` reads after "cannot": ``"create export default/db"``."""
    if isinstance(exc, ApiError):
        status = exc.status
        problem = f"answered {status.code} {status.reason or ''}".rstrip()
        if status.message:
            problem += f": {_one_line(status.message)}"
    elif isinstance(exc, httpx2.HTTPStatusError):
        problem = f"answered {exc.response.status_code} {exc.response.reason_phrase}".rstrip()
    elif isinstance(exc, httpx2.TimeoutException):
        problem = "did not answer in time"
    elif isinstance(exc, (httpx2.TransportError, OSError)):
        reason = _one_line(str(exc)) or type(exc).__name__
        return StoreError(
            f"cannot {doing}: the Kubernetes API at {server} is unreachable ({reason}); "
            "check that it is up and --kube-api or --kubeconfig"
        )
    else:
        problem = f"failed ({type(exc).__name__}: {_one_line(str(exc))})"
    return StoreError(f"cannot {doing}: the Kubernetes API at {server} {problem}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
