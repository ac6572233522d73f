"""The provisioner's objects and checks, as data: no cluster."""

from __future__ import annotations

import random

import pytest

from provisioner import DEFAULT_NAME
from provisioner import objects as o
from provisioner.ledger import (
    Disk,
    NodeLedger,
    Reservation,
    best_fit,
    disks_data,
    disks_from_data,
    ledger_data,
    ledger_from_data,
    plan,
)

GiB = 1 << 30


def claim(size: str = "1Gi", *, modes: list[str] | None = None, mode: str | None = None,
          name: str = "scratch", uid: str = "u-1") -> dict:
    spec: dict = {"accessModes": modes or ["ReadWriteOnce"], "storageClassName": "ssd",
                  "resources": {"requests": {"storage": size}}}
    if mode:
        spec["volumeMode"] = mode
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "s3", "uid": uid,
                         "resourceVersion": "7"}, "spec": spec}


def opts(**kw) -> o.ClassOptions:
    sc = o.storage_class("ssd", kw.pop("reclaim", "Delete"))
    sc["parameters"].update(kw)
    options, problem = o.class_options(sc)
    assert problem is None and options is not None
    return options


def test_pv_is_a_local_volume_bound_to_its_claim_on_its_node() -> None:
    pv = o.persistent_volume(claim("10Gi", uid="abc"), opts(), "node-1", "disk0",
                             "/mnt/ssd/disk0/")
    assert pv["metadata"]["name"] == "pvc-abc"
    assert pv["metadata"]["labels"] == {o.LABEL_NODE: "node-1", o.LABEL_PROVISIONER: DEFAULT_NAME}
    assert pv["metadata"]["annotations"][o.ANN_PROVISIONED_BY] == DEFAULT_NAME
    spec = pv["spec"]
    assert spec["capacity"] == {"storage": str(10 * GiB)}
    assert spec["local"] == {"path": "/mnt/ssd/disk0/pvc-abc"}
    assert spec["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "namespace": "s3", "name": "scratch", "uid": "abc"}
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["accessModes"] == ["ReadWriteOnce"]
    terms = spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                            "values": ["node-1"]}]}]
    assert o.pv_node(pv) == "node-1"
    assert o.pv_owner(pv) == (1000, 1000, 0o2770)


def test_pv_takes_the_class_reclaim_policy_and_owner() -> None:
    pv = o.persistent_volume(claim(), opts(reclaim="Retain", uid="2000", gid="3000",
                                           mode="750"), "n", "d", "/d")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert o.pv_owner(pv) == (2000, 3000, 0o750)


def test_storage_classes_wait_for_the_first_consumer() -> None:
    for policy in ("Delete", "Retain"):
        sc = o.storage_class("mmerep-local-ssd", policy)
        assert sc["provisioner"] == DEFAULT_NAME
        assert sc["reclaimPolicy"] == policy
        assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    with pytest.raises(ValueError):
        o.storage_class("x", "Recycle")


def test_capacity_and_driver_objects() -> None:
    cap = o.storage_capacity("ssd", "node-1", 5 * GiB, 3 * GiB, "prov")
    assert cap["nodeTopology"] == {"matchLabels": {"kubernetes.io/hostname": "node-1"}}
    assert (cap["capacity"], cap["maximumVolumeSize"]) == (str(5 * GiB), str(3 * GiB))
    assert cap["metadata"]["namespace"] == "prov"
    assert o.storage_capacity("ssd", "n", -5, -1, "p")["capacity"] == "0"
    assert len(o.capacity_name("c" * 200, "n" * 200)) <= 253
    drv = o.csi_driver()
    assert drv["metadata"]["name"] == DEFAULT_NAME and drv["spec"]["storageCapacity"] is True
    assert o.valid_name(DEFAULT_NAME) is None
    assert "DNS subdomain" in (o.valid_name("mme-rep.io/local-ssd") or "")


@pytest.mark.parametrize(("bad", "says"), [
    (claim("0"), "0 bytes"),
    (claim("lots"), "not a quantity"),
    (claim(mode="Block"), "Block"),
    (claim(modes=["ReadWriteMany"]), "ReadWriteMany"),
    (claim(modes=["ReadOnlyMany", "ReadWriteOnce"]), "ReadOnlyMany"),
    (claim("2Ti"), "largest local disk"),
])
def test_bad_claims_say_why(bad: dict, says: str) -> None:
    problem = o.claim_problem(bad, largest_disk=1 << 40)
    assert problem is not None and says in problem


def test_good_claims_pass() -> None:
    assert o.claim_problem(claim("1Gi"), None) is None
    assert o.claim_problem(claim("1Gi", modes=["ReadWriteOncePod"]), GiB) is None


def test_class_with_unknown_or_bad_parameters_is_refused() -> None:
    sc = o.storage_class("ssd")
    sc["parameters"]["fsType"] = "xfs"
    assert "unknown parameter(s) fsType" in (o.class_options(sc)[1] or "")
    sc = o.storage_class("ssd")
    sc["parameters"]["mode"] = "rwx"
    assert "octal" in (o.class_options(sc)[1] or "")


@pytest.mark.parametrize(("text", "size"), [
    ("1Gi", GiB), ("10G", 10**10), ("1500", 1500), ("1.5Ki", 1536), ("0.1k", 100),
    ("1.0001k", 1001), (" 2Mi", 2 << 20)])
def test_storage_bytes(text: str, size: int) -> None:
    assert o.storage_bytes(text) == size


def test_handing_back_removes_selected_node_only() -> None:
    patch = o.without_selected_node(claim())
    assert patch == {"metadata": {"annotations": {o.ANN_SELECTED_NODE: None},
                                  "resourceVersion": "7"}}


def test_recreated_claim_is_unbound_and_remembers_its_origin() -> None:
    old = claim(uid="old")
    old["metadata"]["annotations"] = {o.ANN_SELECTED_NODE: "gone", "team": "s3",
                                      "pv.kubernetes.io/bind-completed": "yes"}
    old["spec"]["volumeName"] = "pvc-old"
    new = o.recreated_claim(old)
    assert "volumeName" not in new["spec"]
    assert new["metadata"]["annotations"] == {"team": "s3", o.ANN_RECREATED_FROM: "old"}
    assert "uid" not in new["metadata"]


def test_event_names_the_claim() -> None:
    ev = o.event(claim(), "ProvisioningFailed", "no", warning=True, component="c",
                 now="2026-01-01T00:00:00Z")
    assert ev["involvedObject"]["name"] == "scratch" and ev["type"] == "Warning"
    assert ev["metadata"] == {"generateName": "scratch.", "namespace": "s3"}


# -- the ledger --------------------------------------------------------------------------

def ledger(*sizes: int) -> NodeLedger:
    return NodeLedger("n", {f"d{i}": Disk(f"d{i}", f"/d{i}", s, s) for i, s in
                            enumerate(sizes)})


def test_best_fit_takes_the_tightest_disk() -> None:
    led = ledger(10 * GiB, 4 * GiB, 6 * GiB)
    disk = best_fit(led, 5 * GiB)
    assert disk is not None and disk.name == "d2"
    disk = best_fit(led, 4 * GiB)
    assert disk is not None and disk.name == "d1"
    assert best_fit(led, 11 * GiB) is None
    assert best_fit(led, 0) is None


def test_two_claims_never_take_the_same_bytes() -> None:
    led = ledger(4 * GiB)
    p = plan(led, [("a", "s/a", 4 * GiB), ("b", "s/b", 4 * GiB)], now=1.0)
    assert list(p.placed) == ["a"] and "b" in p.refused
    assert "no local disk with" in p.refused["b"]
    assert p.ledger.available("d0") == 0 and p.new == ("a",)


def test_existing_reservations_are_kept_not_doubled() -> None:
    led = ledger(4 * GiB)
    led.reservations["a"] = Reservation("a", "s/a", "d0", 3 * GiB)
    p = plan(led, [("a", "s/a", 3 * GiB)], now=1.0)
    assert p.placed["a"].disk == "d0" and p.new == ()
    assert p.ledger.reserved("d0") == 3 * GiB


def test_random_bursts_never_overbook() -> None:
    rng = random.Random(12)
    for _ in range(200):
        led = ledger(*[rng.randint(1, 50) * GiB for _ in range(rng.randint(1, 4))])
        for round_ in range(5):
            claims = [(f"{round_}-{i}", f"s/{i}", rng.randint(1, 20) * GiB)
                      for i in range(rng.randint(1, 10))]
            p = plan(led, claims, now=0.0)
            assert not p.ledger.overbooked()
            assert set(p.placed) | set(p.refused) == {c[0] for c in claims}
            # Nothing refused would have fitted on its own in what was left.
            for uid in p.refused:
                size = next(c[2] for c in claims if c[0] == uid)
                assert best_fit(p.ledger, size) is None
            led = p.ledger
            for uid in list(led.reservations)[: rng.randint(0, 3)]:  # some are released
                del led.reservations[uid]


def test_ledger_round_trips_through_configmap_data() -> None:
    led = ledger(GiB)
    led.reservations["a"] = Reservation("a", "s/a", "d0", 100, 5.0)
    data = ledger_data(led)
    back = ledger_from_data("n", data, led.disks.values())
    assert back.reservations == led.reservations and back.disks == led.disks
    assert disks_from_data(disks_data(led.disks.values())) == list(led.disks.values())
    assert ledger_from_data("n", None).reservations == {}


# -- set-aside bytes (the leader's one-write path) -----------------------------------------

def test_set_aside_bytes_are_held_and_survive_the_configmap() -> None:
    from provisioner.ledger import (
        Disk,
        NodeLedger,
        Reservation,
        fit_ahead,
        ledger_data,
        ledger_from_data,
        refill_ahead,
    )

    disks = [Disk("disk0", "/d0", 1000, 1000), Disk("disk1", "/d1", 400, 400)]
    ledger = NodeLedger("n1", reservations={"u1": Reservation("u1", "ns/c1", "disk0", 900)}
                        ).with_disks(disks)
    filled = refill_ahead(ledger, "me", 0.25)
    # A quarter of each disk, never more than is free after the reservations.
    assert filled.ahead == {"disk0": 100, "disk1": 100} and filled.ahead_holder == "me"
    assert filled.available("disk0") == 0 and filled.available("disk1") == 300
    assert filled.overbooked() == []
    back = ledger_from_data("n1", ledger_data(filled), disks)
    assert (back.ahead, back.ahead_holder) == (filled.ahead, "me")
    assert fit_ahead({"disk0": 100, "disk1": 60}, 50) == "disk1"  # the tightest fit
    assert fit_ahead({"disk0": 100}, 101) is None
    # An old ledger (no set-aside field) reads as none.
    old = {k: v for k, v in ledger_data(ledger).items() if k != "ahead"}
    assert ledger_from_data("n1", old).ahead == {}
    assert refill_ahead(ledger, "me", 0.0).ahead_holder == ""


def test_the_periodic_reconcile_waits_for_a_burst_of_claims_but_at_most_one_period() -> None:
    from provisioner.controller import resync_due

    period = 30.0
    assert not resync_due(99.0, 100.0, 0.0, period)  # not due yet
    assert resync_due(100.0, 100.0, 50.0, period)  # due, no claim for a while
    assert not resync_due(100.0, 100.0, 99.5, period)  # due, but claims are coming
    assert not resync_due(129.0, 100.0, 128.9, period)
    assert resync_due(130.0, 100.0, 129.9, period)  # a whole period late: runs anyway
    assert resync_due(101.2, 100.0, 100.1, period)  # the burst is over
