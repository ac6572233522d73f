"""Profiles as a user meets them: the file, each bad-input message, add, precedence, images."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mmerep.cli.profile import app
from mmerep.errors import ClusterError, UsageError
from mmerep.profiles import (
    ENV_VAR,
    LOCAL_REGISTRY,
    Profile,
    add_profile,
    get_profile,
    image_reference,
    load_profiles,
    parse_assignments,
    parse_toleration,
    profiles_path,
    resolved_registry,
    validate,
)

EXAMPLE = """\
profiles:
  dev-s3:
    context: mmerep-general-dev
    namespace: s3
    registry: harbor.example.org
    project: mme-rep
    requests: {cpu: "1", memory: 10G}
    limits: {cpu: "", memory: ""}
    storage_classes: {local-ssd: mmerep-local-ssd, bulk: cephfs}
    node_selector: {mme-rep/processing: "true"}
    tolerations: [{key: dedicated, operator: Equal, value: processing, effect: NoSchedule}]
    ssh_domain: mmerep-general-dev
    max_executors: 400
    max_cpu: "32"
    max_memory: 128Gi
"""

DEV = {"namespace": "s3", "registry": "harbor.example.org", "project": "mme-rep"}


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty config dir and a state dir with no local cluster; no $MMEREP_PROFILES."""
    monkeypatch.setenv("MMEREP_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MMEREP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return tmp_path / "config"


@pytest.fixture
def default_file(config: Path) -> Path:
    config.mkdir(parents=True)
    path = config / "profiles.yaml"
    path.write_text(EXAMPLE)
    return path


def error(raw: object, name: str = "dev-s3") -> str:
    with pytest.raises(UsageError) as exc:
        validate(name, raw)
    return str(exc.value)


# --- loading ---------------------------------------------------------------------------

def test_example_file_loads_with_every_field(default_file: Path) -> None:
    profiles = load_profiles()
    assert list(profiles) == ["local", "dev-s3"]
    dev = profiles["dev-s3"]
    assert dev == Profile(
        name="dev-s3", context="mmerep-general-dev", namespace="s3",
        registry="harbor.example.org", project="mme-rep",
        requests={"cpu": "1", "memory": "10G"}, limits={},
        storage_classes={"local-ssd": "mmerep-local-ssd", "bulk": "cephfs"},
        node_selector={"mme-rep/processing": "true"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "processing",
                      "effect": "NoSchedule"}],
        ssh_domain="mmerep-general-dev", max_executors=400, max_cpu="32", max_memory="128Gi")
    assert dev.source == str(default_file)
    assert dev.kubeconfig is None and dev.ingress_domain is None


def test_missing_default_file_gives_only_the_builtin_local(tmp_path: Path) -> None:
    profiles = load_profiles()
    assert list(profiles) == ["local"]
    local = profiles["local"]
    assert local.source is None
    assert local.context == "mmerep-local" and local.namespace == "mmerep"
    assert local.kubeconfig == str(tmp_path / "state" / "kubeconfig")
    assert local.registry == LOCAL_REGISTRY and local.project == "mme-rep"
    assert local.requests == {"cpu": "1", "memory": "2Gi"}
    assert local.storage_classes == {"local-ssd": "mmerep-local-ssd"}
    assert local.node_selector == {"mme-rep/processing": "true"}
    assert local.ssh_domain == "mmerep-local" and local.max_executors == 500


def test_file_may_replace_local_and_its_registry_defaults_to_the_local_one(
        config: Path) -> None:
    config.mkdir()
    (config / "profiles.yaml").write_text(
        "profiles:\n  local: {namespace: mine, project: mme-rep}\n")
    local = get_profile("local")
    assert local.namespace == "mine" and local.registry == LOCAL_REGISTRY
    assert local.source == str(config / "profiles.yaml")
    assert local.max_executors is None  # replaced, not merged


@pytest.mark.parametrize("text", ["", "profiles:\n", "profiles: {}\n"])
def test_empty_file_is_fine(config: Path, text: str) -> None:
    config.mkdir()
    (config / "profiles.yaml").write_text(text)
    assert list(load_profiles()) == ["local"]


def test_numbers_in_yaml_become_quantity_strings() -> None:
    p = validate("n", {**DEV, "requests": {"cpu": 2, "memory": "8Gi"}, "max_cpu": 1.5})
    assert p.requests == {"cpu": "2", "memory": "8Gi"} and p.max_cpu == "1.5"


def test_to_yaml_dict_round_trips() -> None:
    p = validate("dev-s3", yaml.safe_load(EXAMPLE)["profiles"]["dev-s3"])
    assert validate("dev-s3", p.to_yaml_dict()) == p
    assert "limits" not in p.to_yaml_dict() and "kubeconfig" not in p.to_yaml_dict()


# --- messages for bad input -----------------------------------------------------------

def test_unknown_key_suggests_the_close_one() -> None:
    raw = {"namspace": "s3", "registry": "harbor.example.org", "project": "mme-rep"}
    assert error(raw) == "profile 'dev-s3': unknown key 'namspace' (did you mean 'namespace'?)"


def test_unknown_key_without_close_match_lists_the_known_ones() -> None:
    assert error({**DEV, "colour": "blue"}).startswith(
        "profile 'dev-s3': unknown key 'colour' (known keys: context, kubeconfig, namespace")


def test_bad_quantity() -> None:
    assert error({**DEV, "requests": {"cpu": "1", "memory": "10X"}}) == (
        "profile 'dev-s3': requests.memory '10X' is not a quantity (use e.g. 512Mi, 10G, 8Gi)")
    assert "max_cpu 'lots' is not a quantity (use e.g. 500m" in error({**DEV, "max_cpu": "lots"})
    assert "max_memory '512m' is 0.512 bytes" in error({**DEV, "max_memory": "512m"})


def test_unknown_resource_key() -> None:
    assert error({**DEV, "requests": {"mem": "1Gi"}}) == (
        "profile 'dev-s3': requests: unknown key 'mem' (did you mean 'memory'?)")


@pytest.mark.parametrize("missing", ["namespace", "registry", "project"])
def test_missing_field(missing: str) -> None:
    raw = {k: v for k, v in DEV.items() if k != missing}
    assert error(raw).startswith(f"profile 'dev-s3': missing field '{missing}' (add e.g. ")


def test_empty_profile_says_the_first_missing_field() -> None:
    assert error(None) == "profile 'dev-s3': missing field 'namespace' (add e.g. namespace: s3)"


@pytest.mark.parametrize("namespace", ["S3", "s_3", "-s3", "s3-", "a" * 64, "s3.prod"])
def test_bad_namespace(namespace: str) -> None:
    assert error({**DEV, "namespace": namespace}).startswith(
        f"profile 'dev-s3': namespace '{namespace}' is not valid (use lowercase letters")


def test_bad_profile_name() -> None:
    assert error(DEV, name="Dev_S3").startswith(
        "profile 'Dev_S3': the name must be a DNS label")


def test_body_must_be_a_mapping() -> None:
    assert error(["s3"]) == "profile 'dev-s3': must be a mapping of fields, not a list"


def test_namespace_as_number_must_be_quoted() -> None:
    assert error({**DEV, "namespace": 3}) == (
        "profile 'dev-s3': namespace must be a string, not a integer (quote it: namespace: \"3\")")


@pytest.mark.parametrize(("registry", "hint"), [
    ("harbor.example.org/mme-rep", "put the path in project: registry: harbor.example.org, "
                                   "project: mme-rep"),
    ("https://harbor.example.org", "drop the scheme: registry: harbor.example.org"),
    ("harbor example", "use host[:port]"),
])
def test_bad_registry(registry: str, hint: str) -> None:
    message = error({**DEV, "registry": registry})
    assert message.startswith(f"profile 'dev-s3': registry '{registry}' is not a registry host")
    assert hint in message


@pytest.mark.parametrize("registry", ["harbor.example.org", "127.0.0.1:5000", "localhost:5000",
                                      "[::1]:5000", "local"])
def test_good_registries(registry: str) -> None:
    assert validate("x", {**DEV, "registry": registry}).registry == registry


def test_node_selector_value_true_must_be_quoted() -> None:
    assert error({**DEV, "node_selector": {"mme-rep/processing": True}}) == (
        "profile 'dev-s3': node_selector value of 'mme-rep/processing' must be a string, "
        "not a boolean (quote it: mme-rep/processing: \"true\")")


def test_node_selector_bad_key() -> None:
    assert "node_selector key 'a/b/c!' is not a label name" in error(
        {**DEV, "node_selector": {"a/b/c!": "x"}})


@pytest.mark.parametrize(("toleration", "message"), [
    ({"key": "a", "efect": "NoSchedule"}, "tolerations[0]: unknown key 'efect' "
                                          "(did you mean 'effect'?)"),
    ({"key": "a", "operator": "In"}, "tolerations[0].operator 'In' is not Equal or Exists"),
    ({"key": "a", "effect": "NoRun"}, "tolerations[0].effect 'NoRun' is not valid"),
    ({"operator": "Equal", "value": "x"}, "tolerations[0] has no key"),
    ({"key": "a", "operator": "Exists", "value": "x"}, "has a value but operator Exists"),
    ({"key": "a", "value": True}, "tolerations[0].value must be a string, not a boolean"),
    ({"key": "a", "effect": "NoSchedule", "tolerationSeconds": 30},
     "tolerationSeconds needs effect NoExecute"),
    ("dedicated", "tolerations[0] must be a mapping, not a string"),
])
def test_bad_toleration(toleration: object, message: str) -> None:
    assert message in error({**DEV, "tolerations": [toleration]})


def test_tolerations_must_be_a_list() -> None:
    assert "tolerations must be a list, not a mapping" in error(
        {**DEV, "tolerations": {"key": "a"}})


def test_good_tolerations() -> None:
    tolerations = [{"operator": "Exists"},
                   {"key": "k", "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": 60}]
    assert validate("x", {**DEV, "tolerations": tolerations}).tolerations == tolerations


def test_unknown_storage_tier() -> None:
    assert error({**DEV, "storage_classes": {"ssd": "fast"}}) == (
        "profile 'dev-s3': storage_classes: unknown tier 'ssd' "
        "(known tiers: local-ssd, bulk, datalake)")
    assert "did you mean 'datalake'?" in error({**DEV, "storage_classes": {"data-lake": "s3"}})


def test_limit_below_request() -> None:
    assert "limits.memory '1Gi' is below requests.memory '10G'" in error(
        {**DEV, "requests": {"memory": "10G"}, "limits": {"memory": "1Gi"}})


@pytest.mark.parametrize("value", [0, -1, "400", True, 1.5])
def test_bad_max_executors(value: object) -> None:
    assert f"max_executors '{value}' is not a positive integer" in error(
        {**DEV, "max_executors": value})


def test_file_errors_name_the_file(default_file: Path) -> None:
    default_file.write_text(EXAMPLE.replace("namespace: s3", "namspace: s3"))
    with pytest.raises(UsageError) as exc:
        load_profiles()
    assert str(exc.value) == (f"{default_file}: profile 'dev-s3': unknown key 'namspace' "
                              "(did you mean 'namespace'?)")


@pytest.mark.parametrize(("text", "message"), [
    ("profiles: [\n", "not valid YAML at line 2"),
    ("- a\n", "must be a mapping with the key 'profiles'"),
    ("profile: {}\n", "unknown top-level key 'profile' (did you mean 'profiles'?)"),
    ("profiles: [a]\n", "'profiles' must be a mapping of name to profile"),
])
def test_bad_file_shapes(config: Path, text: str, message: str) -> None:
    config.mkdir()
    (config / "profiles.yaml").write_text(text)
    with pytest.raises(UsageError, match=r"profiles\.yaml: ") as exc:
        load_profiles()
    assert message in str(exc.value)


def test_unknown_profile_lists_the_known_names(default_file: Path) -> None:
    with pytest.raises(UsageError) as exc:
        get_profile("dev-s4")
    assert str(exc.value).startswith(
        "unknown profile 'dev-s4' (did you mean 'dev-s3'? known: local, dev-s3;")


# --- where the file is ----------------------------------------------------------------

def test_precedence_flag_over_env_over_default(tmp_path: Path, config: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert profiles_path() == config / "profiles.yaml"
    env_file = tmp_path / "env.yaml"
    flag_file = tmp_path / "flag.yaml"
    env_file.write_text("profiles:\n  from-env: {namespace: a, registry: r.io, project: p}\n")
    flag_file.write_text("profiles:\n  from-flag: {namespace: b, registry: r.io, project: p}\n")
    monkeypatch.setenv(ENV_VAR, str(env_file))
    assert profiles_path() == env_file
    assert list(load_profiles()) == ["local", "from-env"]
    assert profiles_path(flag_file) == flag_file
    assert list(load_profiles(flag_file)) == ["local", "from-flag"]
    assert get_profile("from-flag", str(flag_file)).namespace == "b"


def test_named_file_that_is_missing_is_an_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match=r"profiles file .*nope.yaml does not exist"):
        load_profiles(tmp_path / "nope.yaml")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.yaml"))
    with pytest.raises(UsageError, match=r"profiles file .*gone.yaml does not exist"):
        load_profiles()


# --- add ------------------------------------------------------------------------------

def test_add_creates_the_file_and_keeps_other_profiles(default_file: Path) -> None:
    before = yaml.safe_load(default_file.read_text())["profiles"]["dev-s3"]
    added = add_profile({"name": "prod-s3", **DEV, "namespace": "s3-prod",
                         "requests": {"cpu": "2", "memory": "8Gi"}})
    assert added.source == str(default_file)
    on_disk = yaml.safe_load(default_file.read_text())["profiles"]
    assert on_disk["dev-s3"] == before
    assert on_disk["prod-s3"] == {**DEV, "namespace": "s3-prod",
                                  "requests": {"cpu": "2", "memory": "8Gi"}}
    assert get_profile("prod-s3") == added
    assert [p.name for p in load_profiles().values()] == ["local", "dev-s3", "prod-s3"]


def test_add_to_a_new_file_in_a_new_dir(config: Path) -> None:
    add_profile({"name": "dev-s3", **DEV})
    assert (config / "profiles.yaml").exists()
    assert get_profile("dev-s3").namespace == "s3"
    assert os.listdir(config) == ["profiles.yaml"]  # no temp file left behind


def test_add_refuses_an_existing_name_unless_replace(default_file: Path) -> None:
    with pytest.raises(UsageError) as exc:
        add_profile({"name": "dev-s3", **DEV})
    assert str(exc.value) == (f"profile 'dev-s3' already exists ({default_file}) "
                              "(use --replace to overwrite it)")
    add_profile({"name": "dev-s3", **DEV, "namespace": "s3-new"}, replace=True)
    assert get_profile("dev-s3").namespace == "s3-new"
    assert get_profile("dev-s3").max_executors is None


def test_add_refuses_to_shadow_builtin_local_unless_replace(config: Path) -> None:
    with pytest.raises(UsageError, match=r"profile 'local' already exists \(built in\)"):
        add_profile({"name": "local", "namespace": "x", "project": "mme-rep"})
    assert not (config / "profiles.yaml").exists()
    add_profile({"name": "local", "namespace": "x", "project": "mme-rep"}, replace=True)
    assert get_profile("local").namespace == "x"


@pytest.mark.parametrize("bad", [
    {"name": "new", **DEV, "namspace": "x"},
    {"name": "new", **DEV, "requests": {"memory": "10X"}},
    {"name": "new", "registry": "r.io", "project": "p"},
    {"name": "Bad_Name", **DEV},
    {**DEV},
])
def test_add_with_invalid_input_leaves_the_file_untouched(default_file: Path,
                                                          bad: dict[str, object]) -> None:
    before = default_file.read_bytes()
    mtime = default_file.stat().st_mtime_ns
    with pytest.raises(UsageError):
        add_profile(bad)
    assert default_file.read_bytes() == before
    assert default_file.stat().st_mtime_ns == mtime
    assert os.listdir(default_file.parent) == ["profiles.yaml"]


def test_add_refuses_to_overwrite_a_broken_file(default_file: Path) -> None:
    default_file.write_text("profiles: [\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        add_profile({"name": "new", **DEV})
    assert default_file.read_text() == "profiles: [\n"


def test_add_keeps_the_file_mode(default_file: Path) -> None:
    default_file.chmod(0o640)
    add_profile({"name": "new", **DEV})
    assert stat.S_IMODE(default_file.stat().st_mode) == 0o640


def test_add_through_a_symlink_replaces_the_target(tmp_path: Path, default_file: Path) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(default_file)
    add_profile({"name": "new", **DEV}, link)
    assert link.is_symlink()
    assert "new" in yaml.safe_load(default_file.read_text())["profiles"]


def test_parse_assignments_and_tolerations() -> None:
    assert parse_assignments(["a=b", "c/d=e=f"], "--node-selector") == {"a": "b", "c/d": "e=f"}
    with pytest.raises(UsageError, match="--node-selector 'ab' is not KEY=VALUE"):
        parse_assignments(["ab"], "--node-selector")
    assert parse_toleration("dedicated=processing:NoSchedule") == {
        "key": "dedicated", "operator": "Equal", "value": "processing", "effect": "NoSchedule"}
    assert parse_toleration("gpu:NoExecute") == {"key": "gpu", "operator": "Exists",
                                                 "effect": "NoExecute"}
    with pytest.raises(UsageError, match="toleration 'gpu' is not KEY"):
        parse_toleration("gpu")


# --- image references -----------------------------------------------------------------

@pytest.fixture
def dev() -> Profile:
    return validate("dev-s3", DEV)


def test_short_image_expands_under_registry_project_and_template(dev: Profile) -> None:
    assert image_reference(dev, "htcondor-batch", "sentinel3:v0.1.0") == (
        "harbor.example.org/mme-rep/htcondor-batch/sentinel3:v0.1.0")
    assert image_reference(dev, "jupyter", "olci/l1:2024.1") == (
        "harbor.example.org/mme-rep/jupyter/olci/l1:2024.1")


@pytest.mark.parametrize("full", [
    "registry.example.org/other/sentinel3:v1",
    "127.0.0.1:5000/mme-rep/htcondor-batch/sentinel3:v0.1.0",
    "localhost/sentinel3:v1",
    "harbor.example.org/mme-rep/x@sha256:" + "a" * 64,
    "harbor.example.org/mme-rep/x:v1@sha256:" + "b" * 64,
])
def test_full_reference_is_taken_as_is(dev: Profile, full: str) -> None:
    assert image_reference(dev, "htcondor-batch", full) == full


def test_digest_counts_as_explicit(dev: Profile) -> None:
    digest = "sha256:" + "c" * 64
    assert image_reference(dev, "t", f"sentinel3@{digest}") == (
        f"harbor.example.org/mme-rep/t/sentinel3@{digest}")


def test_explicit_latest_is_allowed(dev: Profile) -> None:
    assert image_reference(dev, "t", "sentinel3:latest").endswith("/t/sentinel3:latest")


@pytest.mark.parametrize("image", ["sentinel3", "harbor.example.org/mme-rep/sentinel3",
                                   "localhost:5000/sentinel3"])
def test_missing_tag_asks_for_an_explicit_one(dev: Profile, image: str) -> None:
    with pytest.raises(UsageError) as exc:
        image_reference(dev, "htcondor-batch", image)
    assert str(exc.value) == (f"image '{image}' has no tag (give an explicit tag, e.g. "
                              f"{image}:v0.1.0; 'latest' is never assumed)")


def test_uppercase_image_says_names_are_lowercase(dev: Profile) -> None:
    with pytest.raises(UsageError) as exc:
        image_reference(dev, "t", "Sentinel3:v1")
    assert str(exc.value) == ("image 'Sentinel3:v1' is not a valid image reference "
                              "(repository names are lowercase)")


@pytest.mark.parametrize("image", ["sentinel 3:v1", "sentinel3:", "sentinel3:-v1", ":v1",
                                   "sentinel3:v1@sha256:abc", "a//b:v1", "x" * 600 + ":v1",
                                   "sentinel3:" + "v" * 129])
def test_invalid_references(dev: Profile, image: str) -> None:
    with pytest.raises(UsageError, match="is not a valid image reference"):
        image_reference(dev, "t", image)


def test_name_longer_than_255_is_refused(dev: Profile) -> None:
    with pytest.raises(UsageError, match="longer than 255"):
        image_reference(dev, "t", "a" * 240 + ":v1")


def test_bad_template_name(dev: Profile) -> None:
    with pytest.raises(UsageError, match="environment template 'HTCondor' is not valid"):
        image_reference(dev, "HTCondor", "sentinel3:v1")


def test_local_registry_needs_the_running_cluster() -> None:
    local = get_profile("local")
    with pytest.raises(ClusterError, match="the local registry is not running"):
        resolved_registry(local)
    with pytest.raises(ClusterError):
        image_reference(local, "htcondor-batch", "sentinel3:v0.1.0")
    # Bad input is reported before the registry is looked up.
    with pytest.raises(UsageError, match="has no tag"):
        image_reference(local, "htcondor-batch", "sentinel3")


def test_resolved_registry_of_a_remote_profile(dev: Profile) -> None:
    assert resolved_registry(dev) == "harbor.example.org"


# --- the CLI --------------------------------------------------------------------------

runner = CliRunner()


def test_cli_list_json(default_file: Path) -> None:
    out = runner.invoke(app, ["list", "-o", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == [
        {"name": "local", "context": "mmerep-local", "namespace": "mmerep",
         "registry": "local", "project": "mme-rep", "source": "built-in"},
        {"name": "dev-s3", "context": "mmerep-general-dev", "namespace": "s3",
         "registry": "harbor.example.org", "project": "mme-rep", "source": str(default_file)},
    ]


def test_cli_list_table_and_profiles_flag(tmp_path: Path, default_file: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("profiles:\n  other: {namespace: o, registry: r.io, project: p}\n")
    out = runner.invoke(app, ["list", "--profiles", str(other)])
    assert out.exit_code == 0, out.output
    assert "other" in out.stdout and "r.io/p" in out.stdout and "built-in" in out.stdout
    assert "dev-s3" not in out.stdout


def test_cli_show(default_file: Path) -> None:
    out = runner.invoke(app, ["show", "dev-s3", "-o", "yaml"])
    assert out.exit_code == 0, out.output
    shown = yaml.safe_load(out.stdout)
    assert shown["namespace"] == "s3" and shown["max_memory"] == "128Gi"
    assert shown["tolerations"][0]["effect"] == "NoSchedule"
    table = runner.invoke(app, ["show", "local"])
    assert table.exit_code == 0 and "mmerep-local" in table.stdout


def test_cli_show_unknown_profile_raises_the_usage_error(default_file: Path) -> None:
    out = runner.invoke(app, ["show", "nope"])
    assert isinstance(out.exception, UsageError)
    assert "known: local, dev-s3" in str(out.exception)


def test_cli_add(config: Path) -> None:
    out = runner.invoke(app, [
        "add", "dev-s3", "--namespace", "s3", "--registry", "harbor.example.org",
        "--project", "mme-rep", "--context", "mmerep-general-dev", "--request-cpu", "1",
        "--request-memory", "10G", "--max-executors", "400",
        "--storage-class", "local-ssd=mmerep-local-ssd", "--storage-class", "bulk=cephfs",
        "--node-selector", "mme-rep/processing=true",
        "--toleration", "dedicated=processing:NoSchedule", "--ssh-domain", "mmerep-general-dev",
        "--max-cpu", "32", "--max-memory", "128Gi"])
    assert out.exit_code == 0, out.output
    assert "profile dev-s3 added" in out.stdout
    expected = yaml.safe_load(EXAMPLE)["profiles"]["dev-s3"]
    del expected["limits"]
    assert get_profile("dev-s3") == validate("dev-s3", expected)


def test_cli_add_from_file_with_overrides(tmp_path: Path, config: Path) -> None:
    body = tmp_path / "body.yaml"
    body.write_text(EXAMPLE)  # a whole profiles file: the named profile is taken
    out = runner.invoke(app, ["add", "dev-s3", "--from-file", str(body),
                              "--namespace", "s3-b", "--request-memory", "12G"])
    assert out.exit_code == 0, out.output
    p = get_profile("dev-s3")
    assert p.namespace == "s3-b" and p.requests == {"cpu": "1", "memory": "12G"}
    assert p.max_executors == 400


def test_cli_add_bad_input_changes_nothing(default_file: Path) -> None:
    before = default_file.read_bytes()
    out = runner.invoke(app, ["add", "new", "--namespace", "s3", "--registry", "r.io",
                              "--project", "p", "--request-memory", "10X"])
    assert isinstance(out.exception, UsageError)
    assert "requests.memory '10X' is not a quantity" in str(out.exception)
    assert default_file.read_bytes() == before


def test_builtin_local_profile_points_at_the_local_cluster(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mmerep.cluster import local
    from mmerep.profiles import local_profile

    monkeypatch.setenv("MMEREP_STATE_DIR", str(tmp_path / "state"))
    profile = local_profile()
    assert (profile.context, profile.kubeconfig) == (local.CONTEXT, str(local.kubeconfig_path()))
