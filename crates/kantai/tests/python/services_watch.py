"""kubernetes.watch.Watch on Knative Services: a watch from a list's resourceVersion sees the
service ADDED, MODIFIED and DELETED, in that order, and ends at its timeout_seconds."""

import threading
import time

from kubernetes import watch

from kantai_test import (GROUP, NAMESPACE, PLURAL, TIMEOUT, VERSION, check, connect, fail,
                         service, step)

NAME = "py-watch"
WATCH_SECONDS = 30

custom, _ = connect()
args = (GROUP, VERSION, NAMESPACE, PLURAL)

start = custom.list_namespaced_custom_object(*args, _request_timeout=TIMEOUT)
rv = start["metadata"]["resourceVersion"]
check(NAME not in [s["metadata"]["name"] for s in start["items"]], f"listed at {rv}, no {NAME}")

errors = []


def write():
    """The changes the watch must see, made while it runs."""
    try:
        custom.create_namespaced_custom_object(*args, service(NAME), _request_timeout=TIMEOUT)
        custom.patch_namespaced_custom_object(
            *args, NAME, {"metadata": {"labels": {"step": "patched"}}},
            _request_timeout=TIMEOUT)
        custom.delete_namespaced_custom_object(*args, NAME, _request_timeout=TIMEOUT)
    except Exception as e:  # reported by the main thread
        errors.append(e)


writer = threading.Thread(target=write, daemon=True)
writer.start()

seen = []
w = watch.Watch()
began = time.monotonic()
for event in w.stream(custom.list_namespaced_custom_object, *args, resource_version=rv,
                      timeout_seconds=WATCH_SECONDS,
                      _request_timeout=(5, WATCH_SECONDS + 15)):
    obj = event["object"]
    if obj["metadata"]["name"] != NAME:
        continue
    labels = obj["metadata"].get("labels") or {}
    seen.append((event["type"], labels.get("step")))
    print(f"event: {event['type']} {NAME} rv={obj['metadata']['resourceVersion']} "
          f"labels={labels}", flush=True)
    if event["type"] == "DELETED":
        w.stop()
writer.join(timeout=30)
if errors:
    fail(f"writing the service failed: {errors[0]!r}")
check(time.monotonic() - began < WATCH_SECONDS + 15, "the watch ended in time")

types = [t for t, _ in seen]
check(types and types[0] == "ADDED", f"the first event is ADDED ({types})")
check("MODIFIED" in types, "the changes are MODIFIED events")
check(any(t == "MODIFIED" and step == "patched" for t, step in seen),
      "a MODIFIED event carries the patched label")
check(types[-1] == "DELETED" and types.count("DELETED") == 1, "the last event is DELETED")
check(types.count("ADDED") == 1, "ADDED once")

# Without a change to see, a watch ends by itself at timeoutSeconds, as informers expect.
began = time.monotonic()
quiet = list(watch.Watch().stream(
    custom.list_namespaced_custom_object, *args,
    resource_version=custom.list_namespaced_custom_object(
        *args, _request_timeout=TIMEOUT)["metadata"]["resourceVersion"],
    timeout_seconds=2, _request_timeout=(5, 20)))
took = time.monotonic() - began
check(1.5 <= took < 15, f"a quiet watch ends at its timeout ({took:.1f} s)")
check(all(e["object"]["metadata"]["name"] != NAME for e in quiet),
      f"a quiet watch from the latest version repeats nothing of {NAME}")
step("watch: ADDED, MODIFIED and DELETED seen in order")
