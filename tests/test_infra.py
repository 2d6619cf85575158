"""Offline tests of the Azure environment as code: infra/azuredeploy.json, infra/cloud-init.yaml, `cvflow infra`.

The checks here read the files directly (independently of cvflow.infra's own checkers where that matters: the
security group, parameters, secrets), validate the cloud-init with Debian's `cloud-init schema`, and run the
`cvflow infra` command in a subprocess, with a fake `az` on PATH for the non-dry-run paths.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cvflow import infra

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
TEMPLATE = INFRA / "azuredeploy.json"
CLOUD_INIT = INFRA / "cloud-init.yaml"
EXAMPLE = INFRA / "azuredeploy.parameters.example.json"
CLI = [sys.executable, "-c", "import sys; from cvflow.infra import main; sys.exit(main(sys.argv[1:]))"]
SAMPLE_VALUES = {"ADMIN_USER": "azureuser", "FQDN": "cvflow-abc.westeurope.cloudapp.azure.com",
                 "REPO_URL": "https://github.com/cvflow/cvflow", "REPO_REF": "main",
                 "SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555", "RESOURCE_GROUP": "cvflow-rg",
                 "WORKSPACE_NAME": "cvflow-ws"}


@pytest.fixture(scope="module")
def tpl() -> dict:
    return json.loads(TEMPLATE.read_text(encoding="utf-8"))


@pytest.fixture
def pubkey(tmp_path) -> Path:
    p = tmp_path / "id_ed25519.pub"
    p.write_text(infra.demo_public_key("me@laptop") + "\n")
    return p


def _all_strings(o):
    if isinstance(o, str): yield o
    elif isinstance(o, dict):
        for k, v in o.items(): yield k; yield from _all_strings(v)
    elif isinstance(o, list):
        for v in o: yield from _all_strings(v)


# ---------------------------------------------------------------- template structure

def test_template_is_valid_arm_json(tpl):
    assert tpl["$schema"].startswith("https://schema.management.azure.com/schemas/") and "deploymentTemplate" in tpl["$schema"]
    assert tpl["contentVersion"] == "1.0.0.0"
    types = {r["type"] for r in tpl["resources"]}
    for needed in ("Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults", "Microsoft.Insights/components",
                   "Microsoft.ContainerRegistry/registries", "Microsoft.MachineLearningServices/workspaces",
                   "Microsoft.Network/virtualNetworks", "Microsoft.Network/networkSecurityGroups",
                   "Microsoft.Compute/virtualMachines"):
        assert needed in types, f"the template lacks a {needed}"


def test_every_resource_has_type_apiversion_name_and_required_properties(tpl):
    for r in tpl["resources"]:
        for k in ("type", "apiVersion", "name"):
            assert r.get(k), f"{r.get('type')} {r.get('name')}: missing {k}"
        assert re.fullmatch(r"20(1[89]|2\d)-\d\d-\d\d", r["apiVersion"]), f"{r['type']}: {r['apiVersion']} is not a stable dated version"
        assert r["type"] in infra.REQUIRED_PROPERTIES, f"{r['type']} has no row in the required-property table"
    assert infra.resource_problems(tpl) == []


def test_required_property_check_catches_a_removed_property(tpl):
    import copy
    for i, r in enumerate(tpl["resources"]):
        for path in infra.REQUIRED_PROPERTIES[r["type"]]:
            bad = copy.deepcopy(tpl)
            node, parts = bad["resources"][i], path.replace("[]", ".0").split(".")
            for p in parts[:-1]:
                node = node[int(p)] if isinstance(node, list) else node[p]
            del node[parts[-1]]
            assert any(path in p for p in infra.resource_problems(bad)), f"removing {r['type']} {path} went unnoticed"


def test_api_versions_are_the_researched_ones(tpl):
    # current GA versions (ARM template reference / azure-rest-api-specs), none older than 2020
    expected = {"Microsoft.Storage/storageAccounts": "2024-01-01", "Microsoft.KeyVault/vaults": "2024-11-01",
                "Microsoft.OperationalInsights/workspaces": "2023-09-01", "Microsoft.Insights/components": "2020-02-02",
                "Microsoft.ContainerRegistry/registries": "2023-07-01",
                "Microsoft.MachineLearningServices/workspaces": "2024-10-01",
                "Microsoft.Network/networkSecurityGroups": "2024-05-01", "Microsoft.Network/virtualNetworks": "2024-05-01",
                "Microsoft.Network/publicIPAddresses": "2024-05-01", "Microsoft.Network/networkInterfaces": "2024-05-01",
                "Microsoft.Compute/virtualMachines": "2024-07-01", "Microsoft.DevTestLab/schedules": "2018-09-15"}
    assert {r["type"]: r["apiVersion"] for r in tpl["resources"]} == expected


def test_vm_is_the_dsvm_ubuntu_gpu_image_with_key_login_only(tpl):
    vm = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Compute/virtualMachines")
    assert vm["properties"]["storageProfile"]["imageReference"] == {"publisher": "microsoft-dsvm", "offer": "ubuntu-2204",
                                                                   "sku": "2204-gen2", "version": "latest"}
    assert tpl["parameters"]["vmSize"]["defaultValue"] == "Standard_NC4as_T4_v3"
    lc = vm["properties"]["osProfile"]["linuxConfiguration"]
    assert lc["disablePasswordAuthentication"] is True
    assert lc["ssh"]["publicKeys"][0]["keyData"] == "[parameters('sshPublicKey')]"
    assert "adminPassword" not in vm["properties"]["osProfile"]
    assert vm["properties"]["osProfile"]["customData"] == "[base64(variables('cloudInitRendered'))]"


def test_workspace_uses_its_storage_keyvault_insights_and_registry(tpl):
    ws = next(r for r in tpl["resources"] if r["type"] == "Microsoft.MachineLearningServices/workspaces")
    for prop, rtype in [("storageAccount", "Microsoft.Storage/storageAccounts"), ("keyVault", "Microsoft.KeyVault/vaults"),
                        ("applicationInsights", "Microsoft.Insights/components"),
                        ("containerRegistry", "Microsoft.ContainerRegistry/registries")]:
        assert f"resourceId('{rtype}'" in ws["properties"][prop]
        assert ws["properties"][prop] in ws["dependsOn"]


def test_template_expressions_parse_and_use_arm_functions(tpl):
    exprs = [s for s in _all_strings(tpl) if s.startswith("[") and s.endswith("]")]
    assert len(exprs) > 40
    assert infra.expression_problems(tpl) == []
    import copy
    bad = copy.deepcopy(tpl)
    bad["outputs"]["jupyterUrl"]["value"] = "[format('https://{0}/', variables('fqdn')]"
    bad["variables"]["storageAccountName"] = "[formatt('cvflow{0}', variables('suffix'))]"
    probs = infra.expression_problems(bad)
    assert len(probs) == 2 and "unbalanced parentheses" in probs[0] + probs[1] and "unknown function formatt()" in probs[0] + probs[1]


# ---------------------------------------------------------------- parameters

def test_every_referenced_parameter_is_declared_and_every_declared_one_used(tpl):
    refs = set()
    for k, v in tpl.items():
        for s in _all_strings(v) if k != "parameters" else ():
            refs |= set(re.findall(r"parameters\('([^']+)'\)", s))
    declared = set(tpl["parameters"])
    assert refs - declared == set(), f"referenced but not declared: {refs - declared}"
    assert declared - refs == set(), f"declared but unused: {declared - refs}"
    assert infra.parameter_problems(tpl) == []


def test_parameters_example_has_no_secret_and_names_real_parameters(tpl):
    ex = json.loads(EXAMPLE.read_text())
    assert set(ex["parameters"]) <= set(tpl["parameters"])
    assert {"sshPublicKey", "allowedSourceIp"} <= set(ex["parameters"])
    text = EXAMPLE.read_text()
    assert not re.search(r"password|PRIVATE KEY|AccountKey", text, re.I)
    with pytest.raises(ValueError):  # the example key is a placeholder, not a usable key
        p = Path(os.environ.get("TMPDIR", "/tmp")) / f"cvflow-example-{os.getpid()}.pub"
        p.write_text(ex["parameters"]["sshPublicKey"]["value"])
        try: infra.read_ssh_public_key(p)
        finally: p.unlink()


# ---------------------------------------------------------------- secrets

def test_no_hard_coded_secrets(tpl):
    for name, p in tpl["parameters"].items():
        assert p["type"].lower() not in ("securestring", "secureobject"), name
        assert not re.search(r"password|secret", name, re.I), name
    text = TEMPLATE.read_text()
    assert "adminPassword" not in text
    assert "PRIVATE KEY" not in text and "AccountKey=" not in text
    for name, o in tpl["outputs"].items():
        assert not re.search(r"list(Keys|Secrets|Credentials?)\(", json.dumps(o)), name
        assert not re.search(r"password|secret|token|connectionstring", name, re.I), name
    acr = next(r for r in tpl["resources"] if r["type"] == "Microsoft.ContainerRegistry/registries")
    assert acr["properties"]["adminUserEnabled"] is False
    assert infra.secret_problems(tpl) == []


# ---------------------------------------------------------------- network security group

def test_nsg_admits_only_the_parameterised_ip_and_denies_the_rest(tpl):
    nsgs = [r for r in tpl["resources"] if r["type"] == "Microsoft.Network/networkSecurityGroups"]
    assert len(nsgs) == 1
    rules = [r["properties"] | {"name": r["name"]} for r in nsgs[0]["properties"]["securityRules"]]
    inbound = [r for r in rules if r["direction"] == "Inbound"]
    allow = [r for r in inbound if r["access"] == "Allow"]
    deny = [r for r in inbound if r["access"] == "Deny"]
    assert {r["destinationPortRange"] for r in allow} == {"22", "443"}
    for r in allow:
        assert r["sourceAddressPrefix"] == "[parameters('allowedSourceIp')]", r["name"]
        assert "sourceAddressPrefixes" not in r and "destinationPortRanges" not in r, r["name"]
    catch_all = [r for r in deny if r["sourceAddressPrefix"] == "*" and r["destinationPortRange"] == "*" and r["protocol"] == "*"]
    assert catch_all, "no inbound deny-all rule"
    assert min(r["priority"] for r in catch_all) > max(r["priority"] for r in allow)
    # the VM's NIC and its subnet both carry this NSG, and the public IP is Standard (closed unless an NSG allows)
    nic = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Network/networkInterfaces")
    vnet = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Network/virtualNetworks")
    nsg_ref = "[resourceId('Microsoft.Network/networkSecurityGroups', variables('nsgName'))]"
    assert nic["properties"]["networkSecurityGroup"]["id"] == nsg_ref
    assert all(s["properties"]["networkSecurityGroup"]["id"] == nsg_ref for s in vnet["properties"]["subnets"])
    pip = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Network/publicIPAddresses")
    assert pip["sku"]["name"] == "Standard"
    assert infra.nsg_problems(tpl) == []


def test_nsg_check_rejects_an_open_rule(tpl):
    import copy
    for source in ("*", "Internet", "0.0.0.0/0", "203.0.113.10"):
        bad = copy.deepcopy(tpl)
        nsg = next(r for r in bad["resources"] if r["type"] == "Microsoft.Network/networkSecurityGroups")
        nsg["properties"]["securityRules"][0]["properties"]["sourceAddressPrefix"] = source
        assert any("Allow-SSH: inbound allow from" in p for p in infra.nsg_problems(bad)), source


# ---------------------------------------------------------------- cloud-init

def test_template_carries_the_cloud_init_file_verbatim(tpl):
    assert tpl["variables"]["cloudInit"] == CLOUD_INIT.read_text(encoding="utf-8"), "run `cvflow infra sync`"
    placeholders = set(re.findall(r"@@([A-Z_]+)@@", CLOUD_INIT.read_text()))
    replaced = set(re.findall(r"'@@([A-Z_]+)@@'", tpl["variables"]["cloudInitRendered"]))
    assert placeholders == replaced == set(SAMPLE_VALUES)
    # the values passed through are the workspace/subscription/group, never a parameter that could hold a secret
    assert "subscription().subscriptionId" in tpl["variables"]["cloudInitRendered"]
    assert "resourceGroup().name" in tpl["variables"]["cloudInitRendered"]
    assert "sshPublicKey" not in tpl["variables"]["cloudInitRendered"]


def _rendered(tmp_path) -> Path:
    p = tmp_path / "rendered.yaml"
    p.write_text(infra.render_cloud_init(CLOUD_INIT.read_text(), SAMPLE_VALUES))
    return p


def test_cloud_init_content(tmp_path):
    cfg = yaml.safe_load(_rendered(tmp_path).read_text())
    files = {f["path"]: f["content"] for f in cfg["write_files"]}
    assert json.loads(files["/etc/cvflow/config.json"]) == {"subscription_id": SAMPLE_VALUES["SUBSCRIPTION_ID"],
                                                            "resource_group": "cvflow-rg", "workspace_name": "cvflow-ws"}
    dep = json.loads(files["/etc/cvflow/deployment.json"])
    assert dep["via_url"] == "https://www.robots.ox.ac.uk/~vgg/software/via/downloads/via-2.0.12.zip"
    unit = files["/etc/systemd/system/cvflow-jupyterhub.service"]
    assert "User=root" in unit and "ExecStart=/opt/cvflow/venv/bin/jupyterhub -f /etc/cvflow/jupyterhub_config.py" in unit
    assert "WantedBy=multi-user.target" in unit
    nginx = files["/etc/nginx/sites-available/cvflow.conf"]
    assert "listen 443 ssl" in nginx and "proxy_pass http://127.0.0.1:8000;" in nginx and "alias /srv/via/" in nginx
    assert not re.search(r"listen\s+(\[::\]:)?80\b", nginx)
    setup = files["/usr/local/sbin/cvflow-setup"]
    for needed in ("nvidia-smi", "ubuntu-drivers install", 'pip install --quiet -e "$SRC[azure]" "jupyterhub>=', "openssl req -x509",
                   "cvflow-user-setup", "systemctl enable --now cvflow-jupyterhub.service", "--name cvflow --display-name cvflow",
                   f"configurable-http-proxy@{infra.CHP_VERSION}", "systemctl disable --now jupyterhub.service",
                   "visudo -cf /etc/sudoers.d/cvflow-hub-password"):
        assert needed in setup, needed
    assert "JUPYTER_TOKEN" not in CLOUD_INIT.read_text() and "cvflow-jupyter.service" not in files
    assert cfg["ssh_pwauth"] is False  # hub passwords never open SSH
    assert {"nodejs", "npm", "nginx"} <= set(cfg["packages"])
    assert cfg["runcmd"] == [["bash", "/usr/local/sbin/cvflow-setup"]]
    assert infra.hub_problems(_rendered(tmp_path).read_text()) == []


def test_cloud_init_shell_scripts_parse(tmp_path):
    cfg = yaml.safe_load(_rendered(tmp_path).read_text())
    scripts = [f for f in cfg["write_files"] if f["content"].startswith("#!/bin/bash") or f["path"].endswith(".sh")]
    assert {f["path"] for f in scripts} == {"/usr/local/sbin/cvflow-setup", "/usr/local/bin/cvflow-user-setup",
                                           "/etc/profile.d/cvflow.sh", "/usr/local/bin/cvflow-singleuser",
                                           "/usr/local/sbin/cvflow-hub-password", "/usr/local/sbin/cvflow-add-user"}
    for f in scripts:
        p = tmp_path / Path(f["path"]).name
        p.write_text(f["content"])
        r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, f"{f['path']}: {r.stderr}"


# ---------------------------------------------------------------- JupyterHub on the VM

def test_hub_config_loads_with_traitlets_and_keeps_everything_on_loopback(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(infra.hub_config_text(_rendered(tmp_path).read_text()))
    cfg = PyFileConfigLoader(path.name, path=str(tmp_path)).load_config()
    assert cfg.JupyterHub.authenticator_class == "pam" and cfg.Authenticator.allow_all is True
    assert cfg.Authenticator.blocked_users == {"root"} and cfg.Authenticator.admin_users == {"azureuser"}
    assert cfg.JupyterHub.spawner_class == "localprocess" and cfg.Spawner.cmd == ["/usr/local/bin/cvflow-singleuser"]
    assert cfg.Spawner.default_url.startswith("/lab")
    for url in (cfg.JupyterHub.bind_url, cfg.JupyterHub.hub_bind_url, cfg.ConfigurableHTTPProxy.api_url):
        assert url.startswith("http://127.0.0.1:"), url
    assert cfg.ConfigurableHTTPProxy.command == ["/opt/cvflow/chp/node_modules/.bin/configurable-http-proxy"]
    # the classes named exist in the JupyterHub the VM installs (the version this environment tests)
    from jupyterhub.app import JupyterHub
    app = JupyterHub()
    assert app.authenticator_class is not None
    from importlib.metadata import entry_points
    auth = {e.name for e in entry_points(group="jupyterhub.authenticators")}
    spawners = {e.name for e in entry_points(group="jupyterhub.spawners")}
    assert "pam" in auth and {"localprocess", "simple"} <= spawners


def test_nginx_proxies_websockets_to_the_hub_and_serves_via(tmp_path):
    nginx = infra.cloud_init_files(_rendered(tmp_path).read_text())[infra.NGINX_SITE]
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*''\s+close;\s*\}", nginx)
    root = re.search(r"location / \{(.*?)\}", nginx, re.S).group(1)
    for needed in ("proxy_pass http://127.0.0.1:8000;", "proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                   "proxy_set_header Connection $connection_upgrade;", "proxy_set_header Host $host;",
                   "proxy_set_header X-Forwarded-Proto $scheme;", "proxy_read_timeout 86400;"):
        assert needed in root, needed
    assert "location /via/ {" in nginx and "ssl_certificate_key /etc/cvflow/tls/key.pem;" in nginx


def test_the_proxy_and_hub_versions_agree_everywhere():
    # the VM, the Makefile and the test install the same configurable-http-proxy; the VM the JupyterHub tested here
    assert f"configurable-http-proxy@{infra.CHP_VERSION}" in CLOUD_INIT.read_text()
    assert re.search(rf"^CHP_VERSION := {re.escape(infra.CHP_VERSION)}$", (REPO / "Makefile").read_text(), re.M)
    dev = next(l for l in (REPO / "settings.ini").read_text().splitlines() if l.startswith("dev_requirements"))
    spec = next(w for w in dev.split() if w.startswith("jupyterhub"))
    assert f'"{spec}"' in CLOUD_INIT.read_text(), spec


def test_hub_checks_catch_an_open_hub_and_a_missing_websocket_header(tmp_path):
    text = _rendered(tmp_path).read_text()
    assert infra.hub_problems(text) == []
    for old, new, message in [
            ('c.JupyterHub.bind_url = "http://127.0.0.1:8000/"', 'c.JupyterHub.bind_url = "http://:8000/"', "127.0.0.1 only"),
            ('c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"', 'c.ConfigurableHTTPProxy.api_url = "http://0.0.0.0:8001"', "api_url must listen on 127.0.0.1"),
            ('c.JupyterHub.authenticator_class = "pam"', 'c.JupyterHub.authenticator_class = "dummy"', "authenticator_class is 'dummy'"),
            ('c.Authenticator.blocked_users = {"root"}', '', "root must be a blocked user"),
            ("proxy_set_header Connection $connection_upgrade;", "", "websocket headers"),
            ("proxy_pass http://127.0.0.1:8000;", "proxy_pass http://127.0.0.1:8888;", "must proxy_pass http://127.0.0.1:8000"),
            ("systemctl enable --now cvflow-jupyterhub.service", "", "service is never started"),
            ("--name cvflow --display-name", "--name python3 --display-name", "kernel `cvflow`")]:
        assert text.count(old) >= 1, old
        assert any(message in p for p in infra.hub_problems(text.replace(old, new))), (old, infra.hub_problems(text.replace(old, new)))


ADD_USER_STUBS = {  # the system commands cvflow-add-user calls, recorded instead of run (this machine's users stay as they are)
    "id": 'grep -qx "$2" "$STUB_DIR/users" 2>/dev/null && echo 1001 || exit 1',
    "useradd": 'echo "useradd $*" >> "$STUB_DIR/log"; echo "${@: -1}" >> "$STUB_DIR/users"; mkdir -p "$STUB_DIR/home/${@: -1}"',
    "getent": 'echo "$2:x:1001:1001::$STUB_DIR/home/$2:/bin/bash"',
    "install": 'echo "install $*" >> "$STUB_DIR/log"; mkdir -p "${@: -1}"',
    "chown": 'echo "chown $*" >> "$STUB_DIR/log"',
    "runuser": 'echo "runuser $*" >> "$STUB_DIR/log"',
    "hostname": 'echo vm.example.org',
}


def _add_user(tmp_path, *args, key: str) -> subprocess.CompletedProcess:
    files = infra.cloud_init_files(_rendered(tmp_path).read_text())
    script = tmp_path / "cvflow-add-user"
    script.write_text(files[infra.ADD_USER_SCRIPT])
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name, body in ADD_USER_STUBS.items():
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    env = dict(os.environ, STUB_DIR=str(tmp_path), PATH=f"{stubs}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["bash", str(script), *args], input=key, capture_output=True, text=True, env=env, timeout=60)


def test_vm_add_user_script_creates_the_user_with_their_key_once(tmp_path):
    key = infra.demo_public_key("bob@laptop")
    for _ in range(2):  # idempotent: a second run adds neither the user nor the key again
        r = _add_user(tmp_path, "bob", key=key + "\n")
        assert r.returncode == 0, r.stderr
    log = (tmp_path / "log").read_text()
    assert log.count("useradd --create-home --shell /bin/bash bob") == 1
    assert (tmp_path / "home" / "bob" / ".ssh" / "authorized_keys").read_text() == key + "\n"
    assert oct((tmp_path / "home" / "bob" / ".ssh" / "authorized_keys").stat().st_mode & 0o777) == "0o600"
    assert "runuser -l bob -c /usr/local/bin/cvflow-user-setup" in log
    assert "sudo cvflow-hub-password" in r.stdout
    for name, stdin, message in [("Bob", key, "not a valid user name"), ("root", key, "not a valid user name"),
                                 ("x;rm", key, "not a valid user name"), ("carol", "not a key", "not one OpenSSH public key"),
                                 ("carol", key + "\ncommand=\"sh\" " + key, "not one OpenSSH public key")]:
        r = _add_user(tmp_path, name, key=stdin)
        assert r.returncode == 2 and message in r.stderr, (name, r.stderr)
    assert "carol" not in (tmp_path / "log").read_text()


def test_hub_password_helper_changes_only_the_callers_password(tmp_path):
    files = infra.cloud_init_files(_rendered(tmp_path).read_text())
    assert files["/etc/sudoers.d/cvflow-hub-password"].strip().splitlines()[-1] == \
        "ALL ALL=(root) NOPASSWD: /usr/local/sbin/cvflow-hub-password"
    script = files["/usr/local/sbin/cvflow-hub-password"]
    assert 'exec passwd "$user"' in script and 'user="${SUDO_USER:-}"' in script and "$1" not in script
    p = tmp_path / "pw"
    p.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    r = subprocess.run(["bash", str(p)], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2 and "sudo cvflow-hub-password" in r.stderr


def _schema(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("cloud-init")
    if exe is None:
        pytest.skip(f"cloud-init (its schema validator) is not installed: {infra.CLOUD_INIT_INSTALL}")
    return subprocess.run([exe, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=120)


def test_cloud_init_passes_cloud_init_schema(tmp_path):
    r = _schema(CLOUD_INIT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Valid cloud-config" in r.stdout
    r = _schema(_rendered(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_cloud_init_schema_rejects_a_broken_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CLOUD_INIT.read_text().replace("package_update: true", "package_update: [yes, please]"))
    r = _schema(bad)
    assert r.returncode != 0 and "package_update" in (r.stdout + r.stderr)


# ---------------------------------------------------------------- the CLI

def _expected_deploy_line(key_file: Path) -> str:
    return " ".join(["az deployment group create --resource-group cvflow-rg --name cvflow",
                     f"--template-file {shlex.quote(str(TEMPLATE))}",
                     "--parameters location=westeurope allowedSourceIp=203.0.113.10 vmSize=Standard_NC4as_T4_v3",
                     shlex.quote(f"sshPublicKey=<public key from {key_file}>"),
                     "--query properties.provisioningState --output tsv"])


def test_cli_deploy_dry_run_shows_the_hub_in_the_plan(pubkey):
    r = subprocess.run(CLI + ["deploy", "--resource-group", "cvflow-rg", "--location", "westeurope", "--ssh-key", str(pubkey),
                              "--allowed-ip", "203.0.113.10", "--dry-run"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "nginx on 443 (TLS) -> JupyterHub (127.0.0.1:8000" in r.stdout
    assert "each Linux user logs in with their own account (PAM) and gets their own JupyterLab" in r.stdout
    assert "cvflow infra add-user NAME --ssh-key THEIR_KEY.pub --resource-group cvflow-rg" in r.stdout
    assert "/via/" in r.stdout


FAKE_SSH = """#!{python}
import json, os, sys
with open(os.environ["FAKE_SSH_LOG"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}) + "\\n")
print("cvflow-add-user: bob added (clone: /home/bob/cvflow)")
"""


def test_cli_add_user_runs_the_vm_script_over_ssh_with_the_key_on_stdin(pubkey, tmp_path, fake_az):
    env, az_log = fake_az
    bin_dir = Path(env["PATH"].split(os.pathsep)[0])
    (bin_dir / "ssh").write_text(FAKE_SSH.format(python=sys.executable))
    (bin_dir / "ssh").chmod(0o755)
    log = tmp_path / "ssh.log"
    env = dict(env, FAKE_SSH_LOG=str(log))
    r = subprocess.run(CLI + ["add-user", "bob", "--ssh-key", str(pubkey), "--host", "azureuser@cvflow-abc.westeurope.cloudapp.azure.com"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    call = json.loads(log.read_text())
    assert call["argv"] == ["-o", "BatchMode=yes", "azureuser@cvflow-abc.westeurope.cloudapp.azure.com",
                            "sudo /usr/local/sbin/cvflow-add-user bob"]
    assert call["stdin"] == pubkey.read_text().strip() + "\n"
    assert "bob added" in r.stdout and "sudo cvflow-hub-password" in r.stdout and "/home/bob/cvflow" in r.stdout
    assert pubkey.read_text().split()[1] not in r.stdout + r.stderr
    r = subprocess.run(CLI + ["add-user", "bob", "--ssh-key", str(pubkey), "--host", "a@b", "--resource-group", "rg"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 2 and "not allowed with argument" in r.stderr
    r = subprocess.run(CLI + ["add-user", "Bob!", "--ssh-key", str(pubkey), "--host", "a@b"], capture_output=True, text=True,
                       cwd=REPO, env=env, timeout=120)
    assert r.returncode == 1 and "user name 'Bob!'" in r.stderr
    assert len(log.read_text().splitlines()) == 1  # neither bad call reached ssh


def test_cli_deploy_dry_run_prints_the_exact_az_command(pubkey, tmp_path):
    r = subprocess.run(CLI + ["deploy", "--resource-group", "cvflow-rg", "--location", "westeurope", "--ssh-key", str(pubkey),
                              "--allowed-ip", "203.0.113.10", "--dry-run"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "az group create --name cvflow-rg --location westeurope --output none" in lines
    assert _expected_deploy_line(pubkey) in lines
    assert "az deployment group show --resource-group cvflow-rg --name cvflow --query properties.outputs --output json" in lines
    body = pubkey.read_text().split()[1]
    assert body not in r.stdout + r.stderr, "the SSH key must not be echoed"


def test_cli_deploy_rejects_bad_inputs(pubkey, tmp_path):
    base = ["deploy", "--resource-group", "cvflow-rg", "--location", "westeurope", "--dry-run"]
    priv = tmp_path / "id_ed25519"
    priv.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    for extra, message in [(["--ssh-key", str(priv), "--allowed-ip", "203.0.113.10"], "is a PRIVATE key"),
                           (["--ssh-key", str(pubkey), "--allowed-ip", "0.0.0.0/0"], "opens the VM to"),
                           (["--ssh-key", str(pubkey), "--allowed-ip", "*"], "is not an IP address"),
                           (["--ssh-key", str(pubkey), "--allowed-ip", "203.0.113.10", "--vm-size", "NC4"], "VM size 'NC4'")]:
        r = subprocess.run(CLI + base + extra, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert r.returncode == 1 and message in r.stderr, (extra, r.stdout, r.stderr)
        assert "AAAA" not in r.stdout


FAKE_AZ = """#!{python}
import json, os, sys
with open(os.environ["FAKE_AZ_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
a = sys.argv[1:]
if a[:2] == ["group", "exists"]:
    print("false")
elif a[:3] == ["deployment", "group", "create"]:
    print("Succeeded")
elif a[:3] == ["deployment", "group", "show"]:
    print(json.dumps({{"jupyterUrl": {{"type": "String", "value": "https://cvflow-abc.westeurope.cloudapp.azure.com/"}},
                      "viaUrl": {{"type": "String", "value": "https://cvflow-abc.westeurope.cloudapp.azure.com/via/"}}}}))
"""


@pytest.fixture
def fake_az(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable))
    az.chmod(0o755)
    log = tmp_path / "az.log"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", FAKE_AZ_LOG=str(log))
    return env, log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


def test_cli_deploy_runs_az_and_prints_the_jupyter_url(pubkey, fake_az):
    env, log = fake_az
    r = subprocess.run(CLI + ["deploy", "--resource-group", "cvflow-rg", "--location", "westeurope", "--ssh-key", str(pubkey),
                              "--allowed-ip", "203.0.113.10"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "JupyterHub: https://cvflow-abc.westeurope.cloudapp.azure.com/" in r.stdout
    calls = _calls(log)
    assert calls[0] == ["group", "exists", "--name", "cvflow-rg"]
    assert calls[1] == ["group", "create", "--name", "cvflow-rg", "--location", "westeurope", "--output", "none"]
    key = pubkey.read_text().strip()
    assert calls[2] == ["deployment", "group", "create", "--resource-group", "cvflow-rg", "--name", "cvflow",
                        "--template-file", str(TEMPLATE), "--parameters", "location=westeurope",
                        "allowedSourceIp=203.0.113.10", "vmSize=Standard_NC4as_T4_v3", f"sshPublicKey={key}",
                        "--query", "properties.provisioningState", "--output", "tsv"]
    assert calls[3][:3] == ["deployment", "group", "show"] and "properties.outputs" in calls[3]
    assert key.split()[1] not in r.stdout + r.stderr


def test_cli_destroy_asks_and_yes_deletes(fake_az):
    env, log = fake_az
    r = subprocess.run(CLI + ["destroy", "--resource-group", "cvflow-rg"], capture_output=True, text=True, cwd=REPO, env=env,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 2 and "--yes" in r.stderr
    assert _calls(log) == []
    r = subprocess.run(CLI + ["destroy", "--resource-group", "cvflow-rg", "--yes"], capture_output=True, text=True, cwd=REPO,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _calls(log) == [["group", "delete", "--name", "cvflow-rg", "--yes"]]


def test_cli_without_az_says_how_to_install_it(pubkey, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))
    r = subprocess.run(CLI + ["deploy", "--resource-group", "cvflow-rg", "--location", "westeurope", "--ssh-key", str(pubkey),
                              "--allowed-ip", "203.0.113.10"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 1
    assert "Azure CLI (`az`) is not installed" in r.stderr and "install-azure-cli" in r.stderr
    r = subprocess.run(CLI + ["url", "--resource-group", "cvflow-rg"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 1 and "install-azure-cli" in r.stderr


def test_cli_validate(tmp_path):
    r = subprocess.run(CLI + ["validate"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "offline checks passed" in r.stdout
    bad_dir = tmp_path / "infra"
    bad_dir.mkdir()
    tpl = json.loads(TEMPLATE.read_text())
    tpl["parameters"]["adminPassword"] = {"type": "secureString"}
    (bad_dir / "azuredeploy.json").write_text(json.dumps(tpl))
    shutil.copy(CLOUD_INIT, bad_dir)
    r = subprocess.run(CLI + ["validate", "--template", str(bad_dir / "azuredeploy.json")], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 1 and "adminPassword" in r.stderr
