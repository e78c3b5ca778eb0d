"""`make deploy / undeploy / port-forward` with a stand-in kubectl first on PATH that records its calls."""
import os
import stat
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fake_kubectl(tmp_path):
    """Records argv and stdin; renders with the real kubectl for `kustomize`, answers the rest."""
    import shutil
    import sys
    real = shutil.which("kubectl", path=os.path.dirname(sys.executable))
    log = tmp_path / "calls.log"
    script = tmp_path / "kubectl"
    script.write_text(f"""#!/bin/sh
echo "ARGS $*" >> {log}
if [ "$1" = kustomize ]; then exec {real} "$@"; fi
if [ "$1" = apply ] || [ "$1" = delete ]; then cat > {tmp_path}/stdin-$1.yaml; fi
echo ok
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), log


def make(target, kubectl, *args):
    return subprocess.run(["make", "-C", ROOT, target, f"KUBECTL={kubectl}", *args], capture_output=True, text=True)


def test_deploy_applies_the_overlay_with_the_images_and_waits(tmp_path):
    kubectl, log = fake_kubectl(tmp_path)
    r = make("deploy", kubectl, "ENV=gpu-t4", "REGISTRY=eu.gcr.io/acme", "TAG=v7")
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    # kustomize | sed | apply run as one pipeline: their order in the log may vary
    assert sorted(calls[:2]) == ["ARGS apply -f -", "ARGS kustomize k8s/overlays/gpu-t4"]
    assert calls[2:] == [f"ARGS -n lipsync rollout status deployment/{s} --timeout=20m"
                         for s in ("gateway", "preprocess", "generator", "render", "evaluator", "web")]
    applied = (tmp_path / "stdin-apply.yaml").read_text()
    for s in ("gateway", "preprocess", "generator", "render", "evaluator", "web"):
        assert f"image: eu.gcr.io/acme/lipsync-{s}:v7" in applied, s
    assert "REGISTRY/" not in applied and ":latest" not in applied


def test_images_builds_and_pushes_every_service_with_its_dockerfile():
    """`make images` (dry run): one docker build per service from docker/Dockerfile.<service>, named lipsync-<service>."""
    r = subprocess.run(["make", "-n", "-C", ROOT, "images", "REGISTRY=eu.gcr.io/acme", "TAG=v7"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "for s in gateway preprocess generator render evaluator web; do" in r.stdout
    assert "docker build -f docker/Dockerfile.$s -t eu.gcr.io/acme/lipsync-$s:v7 ." in r.stdout
    for s in ("gateway", "preprocess", "generator", "render", "evaluator", "web"):
        assert os.path.isfile(os.path.join(ROOT, "docker", f"Dockerfile.{s}")), s
    assert 'ENTRYPOINT ["python", "-m", "services.render.server"]' in open(
        os.path.join(ROOT, "docker", "Dockerfile.render")).read()


def test_undeploy_and_port_forward(tmp_path):
    kubectl, log = fake_kubectl(tmp_path)
    assert make("undeploy", kubectl, "ENV=local").returncode == 0
    assert make("port-forward", kubectl).returncode == 0
    calls = log.read_text().splitlines()
    assert sorted(calls[:2]) == ["ARGS delete --ignore-not-found -f -", "ARGS kustomize k8s/overlays/local"]
    assert calls[2:] == ["ARGS -n lipsync port-forward service/gateway 50051:50051"]
    assert "kind: Deployment" in (tmp_path / "stdin-delete.yaml").read_text()


def test_a_failing_rollout_fails_deploy(tmp_path):
    kubectl, log = fake_kubectl(tmp_path)
    script = open(kubectl).read().replace('echo ok\n', 'if [ "$3" = rollout ]; then exit 1; fi\necho ok\n')
    open(kubectl, "w").write(script)
    assert make("deploy", kubectl, "ENV=local").returncode != 0
