"""CoreV1Api's pods and nodes, read into the client's typed models (V1Pod, V1Node: where a
null image or a malformed timestamp breaks it), polled all along while a service scales up,
scales down and is deleted."""

import datetime

from kantai_test import (GROUP, NAMESPACE, PLURAL, TIMEOUT, VERSION, check, connect, service,
                         step, until)

NAME = "py-scale"
IMAGE = "docker.io/bonavadeur/shuka:v1.3"
SELECTOR = f"serving.knative.dev/service={NAME}"
MIN_SCALE = "autoscaling.knative.dev/min-scale"

custom, core = connect()
args = (GROUP, VERSION, NAMESPACE, PLURAL)
polls = {"count": 0, "pods seen": set(), "states": set()}


def check_pod(pod, nodes):
    """What every pod of the service must say, whatever its phase."""
    where = f"pod {pod.metadata.name}"
    if not isinstance(pod.metadata.creation_timestamp, datetime.datetime):
        raise AssertionError(f"{where}: creationTimestamp {pod.metadata.creation_timestamp!r}")
    if pod.spec.node_name not in nodes:
        raise AssertionError(f"{where}: node {pod.spec.node_name!r} is none of {nodes}")
    names = [c.name for c in pod.spec.containers]
    if names != ["user-container"]:
        raise AssertionError(f"{where}: containers {names}")
    if pod.spec.containers[0].image != IMAGE:
        raise AssertionError(f"{where}: image {pod.spec.containers[0].image!r}")
    if pod.status.phase not in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
        raise AssertionError(f"{where}: phase {pod.status.phase!r}")
    revision = (pod.metadata.labels or {}).get("serving.knative.dev/revision", "")
    if not revision.startswith(NAME + "-"):
        raise AssertionError(f"{where}: revision label {revision!r}")


def check_owner(pod):
    """A serving pod is owned by its revision (a draining one may outlive it)."""
    owners = [(o.kind, o.name) for o in pod.metadata.owner_references or []]
    revision = pod.metadata.labels["serving.knative.dev/revision"]
    if owners != [("Revision", revision)]:
        raise AssertionError(f"pod {pod.metadata.name}: owners {owners}, not its revision")


def ready(pod):
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def poll():
    """One round of every typed read; the service's pods, each checked."""
    polls["count"] += 1
    node_list = core.list_node(_request_timeout=TIMEOUT)
    nodes = [n.metadata.name for n in node_list.items]
    for n in node_list.items:
        one = core.read_node(n.metadata.name, _request_timeout=TIMEOUT)
        if one.metadata.name != n.metadata.name:
            raise AssertionError(f"read_node {n.metadata.name}: got {one.metadata.name}")
    mine = core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR,
                                    _request_timeout=TIMEOUT).items
    everywhere = core.list_pod_for_all_namespaces(_request_timeout=TIMEOUT).items
    from_all = sorted(p.metadata.name for p in everywhere
                      if (p.metadata.labels or {}).get("serving.knative.dev/service") == NAME)
    if sorted(p.metadata.name for p in mine) != from_all:
        # The two lists are read one after the other: a pod may come or go in between.
        mine = core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR,
                                        _request_timeout=TIMEOUT).items
    for p in mine:
        check_pod(p, nodes)
        polls["pods seen"].add(p.metadata.name)
        polls["states"].add(f"{p.status.phase}{'/ready' if ready(p) else ''}"
                            f"{'/deleting' if p.metadata.deletion_timestamp else ''}")
    return mine


def revision_pods(pods, revision):
    return [p for p in pods if p.metadata.labels.get("serving.knative.dev/revision") == revision]


# Nodes: every node of the fleet, Ready, read one by one.
nodes = core.list_node(_request_timeout=TIMEOUT)
check(len(nodes.items) >= 1, f"list_node: {[n.metadata.name for n in nodes.items]}")
for n in nodes.items:
    conditions = {c.type: c.status for c in n.status.conditions or []}
    check(conditions.get("Ready") == "True", f"node {n.metadata.name} is Ready ({conditions})")
    check(isinstance(n.metadata.creation_timestamp, datetime.datetime),
          f"node {n.metadata.name} has a creationTimestamp")
    one = core.read_node(n.metadata.name, _request_timeout=TIMEOUT)
    check(one.metadata.uid == n.metadata.uid, f"read_node {n.metadata.name}: the same node")
node_names = [n.metadata.name for n in nodes.items]

# One instance, kept by min-scale.
custom.create_namespaced_custom_object(*args, service(NAME, {MIN_SCALE: "1"}),
                                       _request_timeout=TIMEOUT)
pods = until("1 ready pod of the first revision", 60,
             lambda: (lambda ps: ps if len([p for p in revision_pods(ps, f"{NAME}-00001")
                                            if ready(p)]) == 1 else None)(poll()))
step(f"min-scale 1: pod {pods[0].metadata.name} on {pods[0].spec.node_name}, "
     f"ip {pods[0].status.pod_ip}")
check(pods[0].status.pod_ip, "the pod has an IP")
check_owner(pods[0])
step(f"pod {pods[0].metadata.name} is owned by its revision")


def rescale(scale, revision):
    custom.patch_namespaced_custom_object(
        *args, NAME,
        {"spec": {"template": {"metadata": {"annotations": {MIN_SCALE: str(scale)}}}}},
        _request_timeout=TIMEOUT)

    def settled():
        ps = poll()
        mine = revision_pods(ps, revision)
        return ps if len(ps) == scale and len(mine) == scale and all(map(ready, mine)) else None

    ps = until(f"exactly {scale} ready pods, all of {revision}", 60, settled)
    for p in ps:
        check_owner(p)
    step(f"min-scale {scale}: {sorted(p.metadata.name for p in ps)}")


rescale(3, f"{NAME}-00002")
rescale(1, f"{NAME}-00003")

custom.delete_namespaced_custom_object(*args, NAME, _request_timeout=TIMEOUT)
until("every pod of the service to be gone", 60, lambda: not poll())
step("deleted: no pod of the service is left")
check(polls["count"] > 3 and len(polls["pods seen"]) >= 5,
      f"{polls['count']} polls, {len(polls['pods seen'])} pods read as typed models, "
      f"seen {sorted(polls['states'])}")
