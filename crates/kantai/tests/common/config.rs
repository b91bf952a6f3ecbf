//! Secrets and ConfigMaps end to end, whatever runs the function: the scenarios take the
//! container (image and command) of a "reader", a function that answers `GET /env/NAME` with
//! the variable's value and `GET /file/PATH` with the file `/PATH`'s content (404 when there
//! is none), so the same checks run against a process function and a container image.

use std::time::{Duration, Instant};

use kantai_api::resources::{CONFIGMAPS, EVENTS, REVISIONS, SECRETS, SERVICES};
use serde_json::{Value, json};

use super::TestFleet;

/// The reader as a Python program (the node's `/usr/bin/python3`), for a process function:
/// the fleet config maps its image to a process running the container's own command.
pub const READER_PY: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        kind, _, arg = self.path.lstrip('/').partition('/')
        try:
            if kind == 'env':
                body = os.environ[arg].encode()
            elif kind == 'file':
                with open('/' + arg, 'rb') as f:
                    body = f.read()
            else:
                body = b'reader'
            code = 200
        except (KeyError, OSError) as e:
            code, body = 404, type(e).__name__.encode()
        self.send_response(code)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"#;

/// The image the process reader runs under (mapped in [`PROCESS_READER_CONFIG`]).
pub const PROCESS_READER_IMAGE: &str = "kantai-test/config-reader";

/// Fleet config that runs [`PROCESS_READER_IMAGE`] as a process with the container's command.
pub const PROCESS_READER_CONFIG: &str =
    "runtime:\n  images:\n    - image: \"kantai-test/config-reader\"\n";

/// The process reader's container: image and command, no env or mounts yet.
pub fn process_reader() -> Value {
    json!({"image": PROCESS_READER_IMAGE,
           "command": ["/usr/bin/python3", "-c", READER_PY]})
}

/// A Service running `reader` that takes key `password` of Secret `secret` and key
/// `greeting` of ConfigMap `config_map` as env (`PASSWORD`, `GREETING`), the whole ConfigMap
/// with prefix `CM_` (envFrom), and both as volumes under `mounts` (`{mounts}/db`,
/// `{mounts}/app`). `mounts` differs per test: the mount points are the node's.
pub fn reader_service(
    name: &str,
    reader: &Value,
    secret: &str,
    config_map: &str,
    mounts: &str,
) -> Value {
    let mut container = reader.clone();
    container["env"] = json!([
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": config_map, "key": "greeting"}}},
    ]);
    container["envFrom"] = json!([{"prefix": "CM_", "configMapRef": {"name": config_map}}]);
    container["volumeMounts"] = json!([
        {"name": "db", "mountPath": format!("{mounts}/db"), "readOnly": true},
        {"name": "app", "mountPath": format!("{mounts}/app"), "readOnly": true},
    ]);
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {
            "containers": [container],
            "volumes": [
                {"name": "db", "secret": {"secretName": secret}},
                {"name": "app", "configMap": {"name": config_map}},
            ],
        }}}
    })
}

/// Creates (or replaces) ConfigMap `name` with `greeting`, through the API.
pub async fn put_config_map(fleet: &TestFleet, name: &str, greeting: &str) {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                    "data": {"greeting": greeting}});
    match fleet.client.get(CONFIGMAPS, "default", name).await {
        Ok(_) => fleet
            .client
            .replace(CONFIGMAPS, "default", name, &cm)
            .await
            .map(|_| ()),
        Err(_) => fleet
            .client
            .create(CONFIGMAPS, "default", &cm)
            .await
            .map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("cannot write ConfigMap {name}: {e}"));
}

/// Creates Secret `name` with `password`: with kubectl when it is installed (as a user
/// does), else through the API.
pub async fn create_secret(fleet: &TestFleet, name: &str, password: &str) {
    let home = tempfile::tempdir().expect("home");
    let out = std::process::Command::new("kubectl")
        .env("HOME", home.path())
        .env("KUBECONFIG", &fleet.kubeconfig)
        .args(["create", "secret", "generic", name])
        .arg(format!("--from-literal=password={password}"))
        .output();
    match out {
        Ok(o) => assert!(
            o.status.success(),
            "kubectl create secret generic {name} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => {
            let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                           "stringData": {"password": password}});
            fleet
                .client
                .create(SECRETS, "default", &s)
                .await
                .unwrap_or_else(|e| panic!("cannot create Secret {name}: {e}"));
        }
    }
}

/// What the reader answers for `path` through node1's gateway: 200's body, or None.
pub async fn read(fleet: &TestFleet, service: &str, path: &str) -> Option<String> {
    let a = fleet.call("node1", service, path).await;
    (a.status == 200).then_some(a.body)
}

/// The reader gets a Secret and a ConfigMap in env (valueFrom, envFrom) and as files; a
/// ConfigMap update reaches the file within seconds while env stays as it started.
pub async fn reads_secrets_and_config_maps(fleet: &TestFleet, reader: &Value, mounts: &str) {
    put_config_map(fleet, "app", "hello").await;
    create_secret(fleet, "db", "s3cret-pw").await;
    let svc = reader_service("reader", reader, "db", "app", mounts);
    fleet
        .client
        .create(SERVICES, "default", &svc)
        .await
        .expect("create the reader");
    fleet.wait_ready("reader").await;
    for (path, want) in [
        ("/env/PASSWORD", "s3cret-pw"),
        ("/env/GREETING", "hello"),
        ("/env/CM_greeting", "hello"),
    ] {
        assert_eq!(
            read(fleet, "reader", path).await.as_deref(),
            Some(want),
            "{path}"
        );
    }
    for (file, want) in [("db/password", "s3cret-pw"), ("app/greeting", "hello")] {
        let path = format!("/file{mounts}/{file}");
        assert_eq!(
            read(fleet, "reader", &path).await.as_deref(),
            Some(want),
            "{path}"
        );
    }
    // The update is in the file within a few seconds; env is fixed at the start.
    put_config_map(fleet, "app", "bonjour").await;
    let start = Instant::now();
    let path = format!("/file{mounts}/app/greeting");
    super::wait_for(Duration::from_secs(10), "the updated file", || async {
        (read(fleet, "reader", &path).await.as_deref() == Some("bonjour")).then_some(())
    })
    .await;
    eprintln!(
        "the ConfigMap's update reached the file in {:?}",
        start.elapsed()
    );
    assert_eq!(
        read(fleet, "reader", "/env/GREETING").await.as_deref(),
        Some("hello")
    );
}

/// A revision whose Secret is missing is not Ready, says why in its status, an event and a
/// 503, and serves by itself once the Secret is created.
pub async fn a_missing_secret_fails_fast_and_recovers(
    fleet: &TestFleet,
    reader: &Value,
    mounts: &str,
) {
    put_config_map(fleet, "app2", "hi").await;
    let svc = reader_service("needy", reader, "db2", "app2", mounts);
    fleet
        .client
        .create(SERVICES, "default", &svc)
        .await
        .expect("create");
    let rev = super::wait_for(
        Duration::from_secs(30),
        "the revision not Ready for want of its Secret",
        || async {
            let v = fleet
                .client
                .get(REVISIONS, "default", "needy-00001")
                .await
                .ok()?;
            let ready = condition(&v, "Ready")?;
            (ready["reason"] == "CreateContainerConfigError").then_some(v)
        },
    )
    .await;
    let ready = condition(&rev, "Ready").expect("Ready");
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["message"], "secret \"db2\" not found", "{ready}");
    let events = fleet
        .client
        .list(EVENTS, Some("default"))
        .await
        .expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "CreateContainerConfigError"
                && e["type"] == "Warning"
                && e["involvedObject"]["name"] == "needy-00001"
                && e["message"] == "secret \"db2\" not found"),
        "no event for the missing Secret: {events:?}"
    );
    // Requests are answered at once with why, not held.
    let a = fleet.call("node1", "needy", "/env/PASSWORD").await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(a.body.contains("secret \"db2\" not found"), "{}", a.body);
    assert!(a.elapsed < Duration::from_secs(5), "{:?}", a.elapsed);

    create_secret(fleet, "db2", "later-pw").await;
    fleet.wait_ready("needy").await;
    assert_eq!(
        read(fleet, "needy", "/env/PASSWORD").await.as_deref(),
        Some("later-pw")
    );
    assert_eq!(
        read(fleet, "needy", &format!("/file{mounts}/db/password"))
            .await
            .as_deref(),
        Some("later-pw")
    );
}

fn condition(v: &Value, kind: &str) -> Option<Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}
