"""deploy/terraform (AWS: EKS with a GPU node group, S3 + ECR + KMS, a VPC), checked offline: python-hcl2 parses
every file; every variable has a description and a type, the promised validations exist and reject bad values
(evaluated by `terraform console` where a terraform binary exists); outputs are described; the root wires the
three modules; no credential or secret literal anywhere; checkov reports no failed check (skips carry reasons);
`terraform fmt` is clean. `terraform validate` needs the AWS provider, which cannot be downloaded here: it runs
only where the provider is already in a plugin cache (TF_PLUGIN_CACHE_DIR)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TF = ROOT / "deploy" / "terraform"
TOOLS = ROOT / ".cache" / "tools"
MODULES = ("networking", "storage", "gpu_cluster")
# variables whose values are checked before anything is created (the issue: "variables with validations")
VALIDATED = {"": {"region", "environment", "name_prefix", "vpc_cidr", "az_count", "kubernetes_version",
                  "endpoint_public_access_cidrs", "system_instance_types", "system_node_count", "gpu_instance_types",
                  "gpu_min_size", "gpu_max_size", "gpu_desired_size", "gpu_capacity_type", "gpu_disk_size_gb",
                  "artifact_bucket_name", "noncurrent_version_days", "image_repositories", "log_retention_days"},
             "networking": {"vpc_cidr", "az_count"}, "storage": {"bucket_name", "noncurrent_version_days"},
             "gpu_cluster": {"kubernetes_version", "subnet_ids", "endpoint_public_access_cidrs", "gpu_max_size",
                             "gpu_capacity_type"}}


def hcl2():
    "python-hcl2 (MIT) from .cache/tools/hcl2 (deploy/terraform/tools.sh installs it), else from the environment."
    lib = TOOLS / "hcl2" / "lib"
    if lib.exists() and str(lib) not in sys.path:
        sys.path.insert(0, str(lib))
    return pytest.importorskip("hcl2", reason="python-hcl2 is not installed: deploy/terraform/tools.sh")


def parse(folder: Path) -> dict:
    "Every .tf file of one module folder, merged by block type."
    h, merged = hcl2(), {}
    for f in sorted(folder.glob("*.tf")):
        with f.open() as fh:
            for kind, blocks in h.load(fh).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def blocks(doc: dict, kind: str) -> dict:
    return {name: body for b in doc.get(kind, []) for name, body in b.items()}


@pytest.mark.parametrize("module", ["", *MODULES])
def test_variables_are_typed_described_and_validated(module):
    doc = parse(TF / "modules" / module if module else TF)
    variables = blocks(doc, "variable")
    assert variables, module
    for name, body in variables.items():
        assert body.get("type"), f"{module or 'root'}: variable {name} has no type"
        assert len(str(body.get("description", ""))) > 10, f"{module or 'root'}: variable {name} has no description"
    validated = {n for n, b in variables.items() if b.get("validation")}
    assert VALIDATED[module] <= validated, VALIDATED[module] - validated
    for name in validated:
        for v in variables[name]["validation"]:
            assert v.get("condition") and v.get("error_message"), (module, name)
    outputs = blocks(doc, "output")
    assert outputs and all(len(str(o.get("description", ""))) > 5 for o in outputs.values()), module


def test_root_wires_the_three_modules_on_aws():
    doc = parse(TF)
    mods = blocks(doc, "module")
    assert {n: m["source"] for n, m in mods.items()} == {m: f"./modules/{m}" for m in MODULES}
    # every input a module declares without a default is given by the root
    for name in MODULES:
        required = {n for n, b in blocks(parse(TF / "modules" / name), "variable").items() if "default" not in b}
        given = set(mods[name]) - {"source"}
        assert required <= given, (name, required - given)
        assert given <= set(blocks(parse(TF / "modules" / name), "variable")), (name, given)
    provider = doc["provider"][0]["aws"]
    assert not {"access_key", "secret_key", "token", "profile", "shared_credentials_files"} & set(provider)
    assert blocks(parse(TF / "modules" / "gpu_cluster"), "resource")["aws_eks_node_group"]["gpu"]["ami_type"] == \
        "AL2023_x86_64_NVIDIA"


SECRET = re.compile(r"(AKIA|ASIA)[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|"
                    r"\b(access_key|secret_key|password|token|client_secret|secret)\s*=\s*\"[^\"$]+\"", re.I)


def test_no_credentials_or_secrets_in_the_files():
    files = [p for p in TF.rglob("*") if p.is_file() and ".terraform" not in p.parts]
    assert any(p.suffix == ".tf" for p in files)
    for p in files:
        text = p.read_text()
        assert not SECRET.search(text), f"{p}: {SECRET.search(text).group()}"
    assert not list(TF.rglob("*.tfstate*")) and not (TF / "terraform.tfvars").exists()
    # the pattern does catch what it is for
    assert SECRET.search('secret_key = "abc"') and SECRET.search("AKIA" + "ABCDEFGHIJKLMNOP")


def checkov() -> str:
    exe = TOOLS / "checkov" / "bin" / "checkov"
    if exe.exists():
        return str(exe)
    if shutil.which("checkov"):
        return shutil.which("checkov")
    pytest.skip("checkov is not installed: deploy/terraform/tools.sh")


def test_checkov_finds_nothing_and_every_skip_has_a_reason(tmp_path):
    out = subprocess.run([checkov(), "-d", str(TF), "--framework", "terraform", "--skip-download",
                          "-o", "json"], capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = report["results"]["failed_checks"]
    assert not failed, [(c["check_id"], c["resource"]) for c in failed]
    assert report["summary"]["passed"] > 100 and report["summary"]["parsing_errors"] == 0
    assert report["summary"]["skipped"] == len(report["results"]["skipped_checks"]) <= 10
    for c in report["results"]["skipped_checks"]:
        assert len((c.get("check_result") or {}).get("suppress_comment", "")) > 20, c["check_id"]
    # and it does fail a bad file: a public, unencrypted bucket
    (tmp_path / "bad.tf").write_text('resource "aws_s3_bucket" "b" {\n  bucket = "x"\n  acl = "public-read"\n}\n')
    bad = subprocess.run([checkov(), "-d", str(tmp_path), "--framework", "terraform", "--quiet", "--skip-download",
                          "-o", "json"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and json.loads(bad.stdout)["results"]["failed_checks"]


TERRAFORM = shutil.which("terraform")


@pytest.mark.skipif(TERRAFORM is None, reason="no terraform binary")
def test_terraform_fmt_is_clean():
    out = subprocess.run([TERRAFORM, "fmt", "-check", "-recursive", "-diff"], cwd=TF, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"})
    assert out.returncode == 0, out.stdout


@pytest.mark.skipif(TERRAFORM is None, reason="no terraform binary")
def test_validations_reject_bad_values():
    "The conditions, evaluated by terraform itself (`terraform console` needs no provider for expressions)."
    text = (TF / "variables.tf").read_text()

    def holds(name: str, value: str, **others) -> bool:
        # the condition as written (python-hcl2's re-serialized expressions drop the quotes of list items)
        cond = re.search(rf'variable "{name}" {{.*?\n\s*condition\s*=\s*(.*?)\n', text, re.S).group(1)
        for k, v in {name: value, **others}.items():
            cond = cond.replace(f"var.{k}", f"({v})")
        out = subprocess.run([TERRAFORM, "console"], input=cond + "\n", capture_output=True, text=True, timeout=60,
                             cwd=Path("/tmp"), env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"})
        assert out.returncode == 0, (cond, out.stderr)
        return out.stdout.strip() == "true"

    assert holds("region", '"eu-west-1"') and not holds("region", '"Europe"')
    assert holds("vpc_cidr", '"10.40.0.0/16"') and not holds("vpc_cidr", '"10.40.0.0/28"')
    assert not holds("vpc_cidr", '"not-a-cidr"')
    assert holds("gpu_instance_types", '["g6.xlarge","p5.48xlarge"]')
    assert not holds("gpu_instance_types", '["m6i.xlarge"]')
    assert not holds("endpoint_public_access_cidrs", '["0.0.0.0/0"]')
    assert holds("gpu_max_size", "4", gpu_min_size="0") and not holds("gpu_max_size", "1", gpu_min_size="2")
    assert not holds("environment", '"prod"') and holds("environment", '"production"')
    assert not holds("artifact_bucket_name", '"Bad_Name"')


def test_terraform_validate_where_the_provider_is_cached(tmp_path):
    cache = os.environ.get("TF_PLUGIN_CACHE_DIR")
    if TERRAFORM is None or not cache or not list(Path(cache).glob("registry.terraform.io/hashicorp/aws/*")):
        pytest.skip("terraform validate needs the hashicorp/aws provider, which cannot be downloaded here "
                    "(set TF_PLUGIN_CACHE_DIR to a cache holding it)")
    shutil.copytree(TF, tmp_path / "tf")
    env = {**os.environ}
    for cmd in (["init", "-backend=false", "-input=false"], ["validate"]):
        out = subprocess.run([TERRAFORM, *cmd], cwd=tmp_path / "tf", capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
