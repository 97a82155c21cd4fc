"""Push built images to the configured remotes (SPEC §10; docs/push.md).

`push_image(result, config)` pushes one build to every target of the `push` section that
applies to its domain: the OCI layout to registries (`dgr.push.oci`, through skopeo), the
ACI and its signature to acservers (`dgr.push.appc`). `prepare_signature` signs the ACI
first when a keyring is configured for its domain and it has no current signature.

The `dgr push` command, `dgr clean push` and the pytest plugin's `--dgr-push` all call these.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from dgr.config import Config
from dgr.fetch import sign_entry_for
from dgr.push.appc import push_appc
from dgr.push.oci import push_oci
from dgr.push.targets import Credentials, NetworkError, PushError, Target, push_targets, with_retries
from dgr.sign import current_signature, sign_image

if TYPE_CHECKING:
    from dgr.images import BuildResult


@dataclass(frozen=True)
class Pushed:
    """One image pushed to one target: where it went (and the registry's digest for OCI)."""

    target: Target
    location: str
    digest: str = ""

    def document(self) -> dict[str, str]:
        """As JSON (`dgr push --json`): the target's key and type, where the image went and,
        for OCI, the registry's manifest digest."""
        where = "reference" if self.target.type == "oci" else "url"
        result = {"target": self.target.key, "type": self.target.type, where: self.location}
        if self.digest:
            result["digest"] = self.digest
        return result


def prepare_signature(result: BuildResult, config: Config) -> Path | None:
    """The ACI's current signature; made now when the domain has a keyring and there is none."""

    found = current_signature(result.workspace.aci)
    if found is not None:
        return found
    entry = sign_entry_for(result.name.domain, config)
    if entry is None or entry.disabled:
        return None
    return sign_image(result.workspace.aci, result.name, config)


def push_image(result: BuildResult, config: Config, *, signature: Path | None = None) -> list[Pushed]:
    """Push `result` to each applicable target, in configuration order (PushError on the first
    failure; a network failure is tried again, see `with_retries`). `signature` goes with the
    ACI to acservers."""

    targets = push_targets(config)
    where = config.home / "config.yml"
    if not targets:
        raise PushError(
            "no push target configured",
            path=where,
            key="push",
            hint="add e.g. 'push: [{type: oci, registry: HOST[:PORT]}]' (see docs/push.md)",
        )
    chosen = [t for t in targets if t.applies_to(result.name.domain)]
    if not chosen:
        raise PushError(
            f"no push target for the domain {result.name.domain}",
            path=where,
            key="push",
            hint="add the domain to a target's domains (or drop its domains list)",
        )
    pushed = []
    for target in chosen:
        what = f"push of {result.name} to {target.describe()}"
        if target.type == "oci":
            outcome = with_retries(
                partial(push_oci, result.workspace.oci, result.name, target, config), target, what
            )
            pushed.append(Pushed(target, outcome.reference, outcome.digest))
        else:
            sent = with_retries(
                partial(push_appc, result.workspace.aci, signature, result.name, target, config),
                target,
                what,
            )
            pushed.append(Pushed(target, sent.initiate_url))
    return pushed


__all__ = [
    "Credentials",
    "NetworkError",
    "PushError",
    "Pushed",
    "Target",
    "prepare_signature",
    "push_image",
    "push_targets",
]
