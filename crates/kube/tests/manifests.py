#!/usr/bin/env python3
"""Checks deploy/: Kubernetes schema validation (offline, kubernetes-validate) and nfscope's
least-privilege promises (security context, RBAC, probes, discovery).

Usage: manifests.py DEPLOY_DIR. Exits 0 when every check passes, 1 with one line per failure.
Run by crates/kube/tests/deploy_manifests.rs so `cargo test` stays the single runner.

Before checking the real manifests it checks that the security checks reject deliberately broken
copies (privileged, an extra capability, root, a writable root filesystem, ...), so a check that
silently passes everything is caught.
"""

import copy
import os
import sys

import kubernetes_validate
import yaml

# Oldest and newest Kubernetes versions whose schemas kubernetes-validate ships that we promise.
K8S_VERSIONS = ["1.29.0", "1.37.0"]
ALLOWED_CAPS = {"NET_ADMIN", "NET_RAW"}
READ_VERBS = {"get", "list", "watch"}
PORT = 9455


def load_documents(deploy_dir):
    """(file name, document) for every YAML resource file listed by the kustomization."""
    with open(os.path.join(deploy_dir, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    docs = []
    for name in kustomization["resources"]:
        with open(os.path.join(deploy_dir, name)) as f:
            docs.extend((name, d) for d in yaml.safe_load_all(f) if d)
    return kustomization, docs


def check_kustomization(deploy_dir, kustomization):
    errors = []
    listed = set(kustomization.get("resources", []))
    present = {
        n
        for n in os.listdir(deploy_dir)
        if n.endswith((".yaml", ".yml")) and n != "kustomization.yaml"
    }
    for missing in sorted(present - listed):
        errors.append(f"kustomization.yaml: {missing} is not listed in resources")
    for extra in sorted(listed - present):
        errors.append(f"kustomization.yaml: lists {extra}, which does not exist")
    return errors


def check_schemas(docs):
    errors = []
    for name, doc in docs:
        kind = doc.get("kind")
        if kind == "ServiceMonitor":
            errors.extend(check_service_monitor(name, doc))
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                errors.append(f"{name}: {kind} invalid for Kubernetes {version} at {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{name}: no schema for {doc.get('apiVersion')} {kind} in {version}")
    return errors


def check_service_monitor(name, doc):
    """kubernetes-validate has no schema for the prometheus-operator CRD: check its shape by hand."""
    errors = []
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"{name}: ServiceMonitor apiVersion must be monitoring.coreos.com/v1")
    spec = doc.get("spec") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    if labels.get("app.kubernetes.io/name") != "nfscope":
        errors.append(f"{name}: ServiceMonitor must select app.kubernetes.io/name=nfscope")
    endpoints = spec.get("endpoints") or []
    if not endpoints or any(e.get("port") != "metrics" for e in endpoints):
        errors.append(f"{name}: ServiceMonitor endpoints must use the named port 'metrics'")
    allowed = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels"}
    for key in set(spec) - allowed:
        errors.append(f"{name}: unexpected ServiceMonitor spec field {key}")
    return errors


def containers_of(pod_spec):
    return (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or [])


def effective(container, pod_sc, field):
    """A container securityContext field, falling back to the pod-level one."""
    sc = container.get("securityContext") or {}
    return sc[field] if field in sc else pod_sc.get(field)


def check_pod_security(name, pod_spec):
    errors = []
    pod_sc = pod_spec.get("securityContext") or {}
    for key in ("hostPID", "hostIPC"):
        if pod_spec.get(key):
            errors.append(f"{name}: {key} must not be set")
    if pod_spec.get("hostNetwork") is not True:
        errors.append(f"{name}: hostNetwork must be true (nfscope reads the node's netfilter state)")
    for volume in pod_spec.get("volumes") or []:
        if "hostPath" in volume:
            errors.append(f"{name}: volume {volume['name']} is a hostPath")
    for c in containers_of(pod_spec):
        where = f"{name}: container {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            errors.append(f"{where}: privileged")
        if effective(c, pod_sc, "runAsNonRoot") is not True:
            errors.append(f"{where}: runAsNonRoot must be true")
        uid = effective(c, pod_sc, "runAsUser")
        if not isinstance(uid, int) or uid == 0:
            errors.append(f"{where}: runAsUser must be a non-zero uid, not {uid!r}")
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if [d.upper() for d in caps.get("drop") or []] != ["ALL"]:
            errors.append(f"{where}: capabilities.drop must be exactly [ALL]")
        added = {a.upper().removeprefix("CAP_") for a in caps.get("add") or []}
        if added - ALLOWED_CAPS:
            errors.append(f"{where}: capabilities beyond NET_ADMIN/NET_RAW: {sorted(added - ALLOWED_CAPS)}")
        if "SYS_ADMIN" in added or "ALL" in added:
            errors.append(f"{where}: SYS_ADMIN/ALL added")
    return errors


def check_daemonset(name, ds):
    pod = ds["spec"]["template"]
    spec = pod["spec"]
    errors = check_pod_security(name, spec)
    annotations = pod.get("metadata", {}).get("annotations") or {}
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(PORT):
        errors.append(f"{name}: pod template needs prometheus.io/scrape=true and prometheus.io/port={PORT}")
    if not any(t.get("operator") == "Exists" and "key" not in t for t in spec.get("tolerations") or []):
        errors.append(f"{name}: needs a toleration for every taint (operator: Exists, no key)")
    for c in spec.get("containers") or []:
        where = f"{name}: container {c.get('name')}"
        resources = c.get("resources") or {}
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part) or {}):
                errors.append(f"{where}: resources.{part} needs cpu and memory")
        for probe in ("livenessProbe", "readinessProbe"):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != "/healthz" or get.get("port") not in (PORT, "metrics"):
                errors.append(f"{where}: {probe} must GET /healthz on port {PORT}")
        env = {e["name"]: e for e in c.get("env") or []}
        field = (((env.get("NODE_NAME") or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if field != "spec.nodeName":
            errors.append(f"{where}: env NODE_NAME must come from the downward API (spec.nodeName)")
    return errors


def check_rbac(name, role):
    errors = []
    for rule in role.get("rules") or []:
        verbs = set(rule.get("verbs") or [])
        if verbs - READ_VERBS:
            errors.append(f"{name}: ClusterRole grants {sorted(verbs - READ_VERBS)} (read-only expected)")
        if "*" in (rule.get("resources") or []) or "secrets" in (rule.get("resources") or []):
            errors.append(f"{name}: ClusterRole reaches secrets or '*'")
    return errors


def check_security(docs):
    errors = []
    kinds = [d.get("kind") for _, d in docs]
    for required in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet", "Service"):
        if required not in kinds:
            errors.append(f"deploy/: no {required}")
    for name, doc in docs:
        kind = doc.get("kind")
        if kind == "DaemonSet":
            errors.extend(check_daemonset(name, doc))
        elif kind in ("Deployment", "StatefulSet", "Job"):
            errors.extend(check_pod_security(name, doc["spec"]["template"]["spec"]))
        elif kind in ("ClusterRole", "Role"):
            errors.extend(check_rbac(name, doc))
    return errors


def mutations():
    """(description, function breaking a DaemonSet in place) that check_security must catch."""

    def container_sc(ds):
        return ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]

    def pod_spec(ds):
        return ds["spec"]["template"]["spec"]

    return [
        ("privileged", lambda ds: container_sc(ds).update(privileged=True)),
        ("SYS_ADMIN added", lambda ds: container_sc(ds)["capabilities"]["add"].append("SYS_ADMIN")),
        ("drop not ALL", lambda ds: container_sc(ds)["capabilities"].update(drop=["NET_BIND_SERVICE"])),
        ("root user", lambda ds: container_sc(ds).update(runAsUser=0)),
        ("runAsNonRoot false", lambda ds: container_sc(ds).update(runAsNonRoot=False)),
        ("writable root fs", lambda ds: container_sc(ds).update(readOnlyRootFilesystem=False)),
        ("privilege escalation", lambda ds: container_sc(ds).pop("allowPrivilegeEscalation")),
        ("hostPID", lambda ds: pod_spec(ds).update(hostPID=True)),
        ("hostPath", lambda ds: pod_spec(ds).setdefault("volumes", []).append({"name": "h", "hostPath": {"path": "/"}})),
        ("no limits", lambda ds: pod_spec(ds)["containers"][0]["resources"].pop("limits")),
    ]


def self_test(docs):
    """Every mutation of the real DaemonSet must produce at least one security error."""
    errors = []
    daemonsets = [(n, d) for n, d in docs if d.get("kind") == "DaemonSet"]
    if not daemonsets:
        return ["self-test: no DaemonSet to mutate"]
    name, ds = daemonsets[0]
    for description, mutate in mutations():
        broken = copy.deepcopy(ds)
        mutate(broken)
        if not check_security([(name, broken)]):
            errors.append(f"self-test: a DaemonSet with '{description}' passed the security checks")
    return errors


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    deploy_dir = sys.argv[1]
    kustomization, docs = load_documents(deploy_dir)
    errors = check_kustomization(deploy_dir, kustomization)
    errors += check_schemas(docs)
    errors += check_security(docs)
    errors += self_test(docs)
    for e in errors:
        print(f"FAIL {e}")
    checked = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for _, d in docs)
    print(f"checked {len(docs)} resources ({checked}) against Kubernetes {', '.join(K8S_VERSIONS)}")
    print(f"{len(errors)} failures")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
