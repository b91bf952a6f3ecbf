"""The Kubernetes Python client's CustomObjectsApi on Knative Services: create, get, list,
merge patch, replace and delete, each answer checked."""

import copy

from kubernetes import client

from kantai_test import (GROUP, NAMESPACE, PLURAL, TIMEOUT, VERSION, check, condition,
                         connect, service, step, until)

NAME = "py-crud"

custom, _ = connect()
args = (GROUP, VERSION, NAMESPACE, PLURAL)

created = custom.create_namespaced_custom_object(*args, service(NAME), _request_timeout=TIMEOUT)
check(created["metadata"]["name"] == NAME and created["metadata"].get("uid"),
      f"create: {NAME} has a uid ({created['metadata'].get('uid')})")
check(created["metadata"].get("generation") == 1, "create: generation 1")

got = custom.get_namespaced_custom_object(*args, NAME, _request_timeout=TIMEOUT)
check(got["metadata"]["uid"] == created["metadata"]["uid"], "get: the same object")
check(got["spec"]["template"]["spec"]["containers"][0]["image"]
      == "docker.io/bonavadeur/shuka:v1.3", "get: the image as written")

listed = custom.list_namespaced_custom_object(*args, _request_timeout=TIMEOUT)
check(listed["kind"] == "ServiceList", f"list: a ServiceList ({listed['kind']})")
check(NAME in [s["metadata"]["name"] for s in listed["items"]], "list: holds the service")
check(listed["metadata"].get("resourceVersion"), "list: carries a resourceVersion")
everywhere = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, _request_timeout=TIMEOUT)
check(NAME in [s["metadata"]["name"] for s in everywhere["items"]],
      "list in every namespace: holds the service")
selected = custom.list_namespaced_custom_object(
    *args, field_selector=f"metadata.name={NAME}", _request_timeout=TIMEOUT)
check([s["metadata"]["name"] for s in selected["items"]] == [NAME],
      "list with a field selector: only the service")

ready = until("the service to be Ready", 60, lambda: (
    lambda s: s if condition(s, "Ready") == "True" else None)(
        custom.get_namespaced_custom_object(*args, NAME, _request_timeout=TIMEOUT)))
check(ready["status"].get("url"), f"Ready, with a URL ({ready['status'].get('url')})")

# The client sends a JSON merge patch for a dict body on custom objects.
patched = custom.patch_namespaced_custom_object(
    *args, NAME,
    {"metadata": {"labels": {"patched": "yes"}},
     "spec": {"template": {"spec": {"containers": [
         {"image": "docker.io/bonavadeur/shuka:v1.3",
          "env": [{"name": "TARGET", "value": "Patched"}]}]}}}},
    _request_timeout=TIMEOUT)
check(patched["metadata"]["labels"].get("patched") == "yes", "merge patch: the label is added")
check(patched["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "Patched",
      "merge patch: the template changed")
check(patched["metadata"]["generation"] == 2, "merge patch: generation 2")


def replace_latest():
    """Read, change, replace: the controllers write the status meanwhile, so a conflict means
    reading again (a few times at most), as clients' retry-on-conflict does."""
    for attempt in range(1, 6):
        latest = custom.get_namespaced_custom_object(*args, NAME, _request_timeout=TIMEOUT)
        new = copy.deepcopy(latest)
        new["metadata"]["labels"] = {"replaced": "yes"}
        new["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "Replaced"
        try:
            return latest, custom.replace_namespaced_custom_object(
                *args, NAME, new, _request_timeout=TIMEOUT)
        except client.ApiException as e:
            if e.status != 409 or attempt == 5:
                raise
            step(f"replace: 409 on attempt {attempt} (the status changed meanwhile); again")
    return None


stale, replaced = replace_latest()
check(replaced["metadata"]["labels"] == {"replaced": "yes"},
      f"replace: the labels are the new ones ({replaced['metadata']['labels']})")
check(replaced["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "Replaced",
      "replace: the template is the new one")
check(replaced["metadata"]["generation"] == 3, "replace: generation 3")
check(int(replaced["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"]),
      "replace: a newer resourceVersion")

# A replace with the version read before is a conflict, as in Kubernetes.
try:
    custom.replace_namespaced_custom_object(*args, NAME, stale, _request_timeout=TIMEOUT)
    check(False, "replace with a stale resourceVersion: refused")
except client.ApiException as e:
    check(e.status == 409, f"replace with a stale resourceVersion: 409 ({e.status})")

deleted = custom.delete_namespaced_custom_object(*args, NAME, _request_timeout=TIMEOUT)
check(deleted.get("kind") == "Status" and deleted.get("status") == "Success",
      f"delete: a Success Status ({deleted.get('kind')} {deleted.get('status')})")
try:
    custom.get_namespaced_custom_object(*args, NAME, _request_timeout=TIMEOUT)
    check(False, "get after delete: not found")
except client.ApiException as e:
    check(e.status == 404, f"get after delete: 404 ({e.status})")
try:
    custom.delete_namespaced_custom_object(*args, NAME, _request_timeout=TIMEOUT)
    check(False, "delete again: not found")
except client.ApiException as e:
    check(e.status == 404, f"delete again: 404 ({e.status})")
print("services: create, get, list, patch, replace and delete work")
