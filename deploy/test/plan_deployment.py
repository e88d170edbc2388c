#!/usr/bin/env python3
"""Merges a `rodiff plan --format k8s` patch into a minimal Deployment, as `kubectl patch` would.

    plan_deployment.py PATCH IMAGE OUT

The Deployment runs IMAGE in one container per container the patch names. The merge follows the
strategic-merge rules of the pod template's lists the patch uses: `containers`,
`initContainers`, `volumes` and `volumeMounts` merge by `name`, maps merge key by key, anything
else is replaced. OUT is then checked with `kubernetes-validate --strict` by the caller (the
workload tests in tests/plan_workloads.rs); it needs PyYAML, which kubernetes-validate brings
(`make deploy-venv`).
"""

import sys

import yaml

BY_NAME = {"containers", "initContainers", "volumes", "volumeMounts"}


def merge(base, patch, key=None):
    """`patch` merged into `base` (both parsed YAML)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in BY_NAME:
        out = list(base)
        for item in patch:
            for i, old in enumerate(out):
                if old.get("name") == item.get("name"):
                    out[i] = merge(old, item)
                    break
            else:
                out.append(item)
        return out
    return patch


def main():
    patch_file, image, out_file = sys.argv[1:]
    with open(patch_file) as f:
        patch = yaml.safe_load(f)
    names = [c["name"] for c in patch["spec"]["template"]["spec"]["containers"]]
    labels = {"app": "rodiff-plan"}
    base = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "rodiff-plan"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": n, "image": image} for n in names]},
            },
        },
    }
    merged = merge(base, patch)
    with open(out_file, "w") as f:
        yaml.safe_dump(merged, f, sort_keys=False)


if __name__ == "__main__":
    main()
