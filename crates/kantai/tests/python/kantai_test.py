"""What the client scripts share: the fleet's kubeconfig, Knative Service manifests, and
waiting on a condition with a deadline (never sleeping for correctness).

Each script prints every step it checks, so the Rust test that runs it shows them when it
fails.
"""

import sys
import time

from kubernetes import client, config

GROUP = "serving.knative.dev"
VERSION = "v1"
PLURAL = "services"
NAMESPACE = "default"

# Every request is bounded: (connect, read) seconds.
TIMEOUT = (5, 30)

STARTED = time.monotonic()


def connect():
    """The API clients for the fleet named by $KUBECONFIG (TLS with its CA, bearer token)."""
    config.load_kube_config()
    api = client.ApiClient()
    return client.CustomObjectsApi(api), client.CoreV1Api(api)


def step(text):
    """Says what was just checked."""
    print(f"ok [{time.monotonic() - STARTED:5.1f} s]: {text}", flush=True)


def fail(text):
    print(f"FAILED [{time.monotonic() - STARTED:5.1f} s]: {text}", flush=True)
    sys.exit(1)


def check(condition, text):
    """Asserts, printing the step either way."""
    if not condition:
        fail(text)
    step(text)


def until(what, seconds, probe, interval=0.2):
    """Polls `probe` until it returns something truthy, for at most `seconds`. An exception
    from the probe ends the script with its traceback: the API must answer every poll."""
    deadline = time.monotonic() + seconds
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            fail(f"timed out after {seconds} s waiting for {what}")
        time.sleep(interval)


def service(name, annotations=None, target="Konnichiwa"):
    """A Knative Service running kantai's hello function (the seed's image)."""
    anns = {"autoscaling.knative.dev/window": "6s"}
    anns.update(annotations or {})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "template": {
                "metadata": {"annotations": anns},
                "spec": {
                    "containers": [
                        {
                            "image": "docker.io/bonavadeur/shuka:v1.3",
                            "env": [{"name": "TARGET", "value": target}],
                        }
                    ]
                },
            }
        },
    }


def condition(obj, kind):
    """The status of a condition of a custom object (a dict), or None."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status")
    return None
