"""The IAM policy the sandbox's Google stand-in enforces: the grants infra/ would create
for a config, evaluated from the Terraform itself (the evaluator the infra tests use),
so a grant missing from infra/ is missing in the sandbox too.

Only the grants the stand-in can check are collected: project-level roles (GKE's
container.clusters.get through the cluster_getter custom role), secret-level ones
(Secret Manager) and Cloud Run invokers (run.routes.invoke on a function's service,
which the sandbox's Cloud Run ingress checks, sandbox/cloud_run.py). The Pub/Sub
emulator has no IAM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.terraform.hcl_eval import Module, Unknown

__all__ = ["Grant", "iam_grants"]

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
# The predefined roles geodeploy grants whose permissions the stand-in checks.
_PREDEFINED = {
    "roles/secretmanager.secretAccessor": ["secretmanager.versions.access"],
    "roles/run.invoker": ["run.routes.invoke"],
}
_SERVICE_ACCOUNT = re.compile(r'google_service_account\.role\["([^"]+)"\]\.member')
_CUSTOM_ROLE = re.compile(r"google_project_iam_custom_role\.(\w+)\.id")
_SECRET = re.compile(r'google_secret_manager_secret\.(\w+)(?:\["([^"]+)"\])?\.id')  # one secret, or one of a for_each
_FUNCTION_SERVICE = re.compile(r'google_cloudfunctions2_function\.fn\["([^"]+)"\]\.service_config\[0\]\.service')
# The members a config names itself (status_page.viewers): a person's or group's email.
_NAMED_MEMBER = re.compile(r"(?:user|group|serviceAccount):(.+)")


@dataclass(frozen=True)
class Grant:
    member: str  # a service account's email
    permission: str
    resource: str  # projects/p, or projects/p/secrets/s: it covers what is under it

    def as_json(self) -> dict[str, str]:
        return {"member": self.member, "permission": self.permission, "resource": self.resource}


def iam_grants(config_path: Path) -> list[Grant]:
    module = Module(INFRA, {"config_path": str(Path(config_path).resolve())})
    project = module.local("project")
    accounts = module.local("service_accounts")

    def email(member: Any) -> str | None:
        if isinstance(member, str) and (named := _NAMED_MEMBER.fullmatch(member)):
            return named.group(1)
        m = _SERVICE_ACCOUNT.fullmatch(member.ref) if isinstance(member, Unknown) else None
        return f"{accounts[m.group(1)]['account_id']}@{project}.iam.gserviceaccount.com" if m else None

    def permissions(role: Any) -> list[str]:
        if isinstance(role, Unknown) and (m := _CUSTOM_ROLE.fullmatch(role.ref)):
            custom = module.resource("google_project_iam_custom_role", m.group(1)).instances()[None]
            return list(custom.get("permissions"))
        return _PREDEFINED.get(str(role), [])

    grants: list[Grant] = []
    for name in module.resources.get("google_project_iam_member", {}):
        for grant in module.resource("google_project_iam_member", name).instances().values():
            member = email(grant.get("member"))
            if member:
                grants += [Grant(member, p, f"projects/{project}") for p in permissions(grant.get("role"))]
    for name in module.resources.get("google_secret_manager_secret_iam_member", {}):
        for grant in module.resource("google_secret_manager_secret_iam_member", name).instances().values():
            member, secret_ref = email(grant.get("member")), grant.get("secret_id")
            m = _SECRET.fullmatch(secret_ref.ref) if isinstance(secret_ref, Unknown) else None
            if member and m:
                secret = module.resource("google_secret_manager_secret", m.group(1)).instances()[m.group(2)]
                resource = f"projects/{project}/secrets/{secret.get('secret_id')}"
                grants += [Grant(member, p, resource) for p in permissions(grant.get("role"))]
    functions = module.local("functions")
    for name in module.resources.get("google_cloud_run_service_iam_member", {}):
        for grant in module.resource("google_cloud_run_service_iam_member", name).instances().values():
            member, service_ref = email(grant.get("member")), grant.get("service")
            m = _FUNCTION_SERVICE.fullmatch(service_ref.ref) if isinstance(service_ref, Unknown) else None
            if member and m:
                function = m.group(1)
                resource = f"projects/{project}/locations/{functions[function]['location']}/services/{function}"
                grants += [Grant(member, p, resource) for p in permissions(grant.get("role"))]
    return grants
