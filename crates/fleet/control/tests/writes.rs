//! Every write path of the API against `tests/data/writes/*.yaml` (its README says what a
//! case holds): each case a request and the answer Kubernetes would give (code, reason, the
//! fields named), checked on a fresh control plane in-process on loopback, and a refused
//! write leaves the object it names as it was. Every file runs; a failure names every failing
//! file and case. Beside each file, `NAME.answers` records the answers (`UPDATE_EXPECT=1`
//! rewrites them).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use kantai_control::ControlPlane;
use kantai_testkit::{Case, DataDir, expect_file};
use serde_json::{Value, json};

mod common;
use common::TOKEN;

struct Answer {
    code: u16,
    body: Value,
}

struct Api {
    base: String,
    http: HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
        token: bool,
    ) -> Answer {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type);
        if token {
            req = req.header("authorization", format!("Bearer {TOKEN}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within 10 s"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { code, body }
    }

    async fn json(&self, method: &str, path: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send(method, path, Some(bytes), "application/json", true)
            .await
    }
}

/// A fresh control plane with node1, Service hello and an instance of it on node1.
async fn fleet(dir: &std::path::Path) -> (ControlPlane, Api) {
    let cp = common::control_plane(dir).await;
    let api = Api {
        base: format!("http://{}", cp.addr),
        http: HttpClient::builder(TokioExecutor::new()).build_http(),
    };
    let setup = [
        (
            "/apis/kantai.dev/v1alpha1/nodes/node1",
            json!({"metadata": {"name": "node1"},
                   "spec": {"gateway": "127.0.0.1:8080", "data": "127.0.0.1:9000",
                            "admin": "127.0.0.1:9001", "capacity": {"instances": 10}}}),
        ),
        (
            "/apis/kantai.dev/v1alpha1/namespaces/default/instances/hello-node1-abcde",
            json!({"metadata": {"name": "hello-node1-abcde"},
                   "spec": {"revision": "hello-00001", "service": "hello", "node": "node1",
                            "containerConcurrency": 0, "image": "hello"},
                   "status": {"phase": "Pending", "ready": false, "restarts": 0}}),
        ),
    ];
    for (path, body) in setup {
        let a = api.json("PUT", path, &body).await;
        assert_eq!(a.code, 200, "setup PUT {path}: {}", a.body);
    }
    let a = api
        .json(
            "POST",
            "/apis/serving.knative.dev/v1/namespaces/default/services",
            &json!({"metadata": {"name": "hello"},
                    "spec": {"template": {"spec": {"containers": [{"image": "hello"}]}}}}),
        )
        .await;
    assert_eq!(a.code, 201, "setup service: {}", a.body);
    let core = [
        (
            "secrets",
            json!({"metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}}),
        ),
        (
            "configmaps",
            json!({"metadata": {"name": "app"}, "data": {"mode": "fast"}}),
        ),
        (
            "configmaps",
            json!({"metadata": {"name": "frozen"}, "data": {"mode": "fast"}, "immutable": true}),
        ),
        (
            "secrets",
            json!({"metadata": {"name": "sealed"}, "data": {"password": "aHVudGVyMg=="}, "immutable": true}),
        ),
    ];
    for (plural, body) in core {
        let path = format!("/api/v1/namespaces/default/{plural}");
        let a = api.json("POST", &path, &body).await;
        assert_eq!(a.code, 201, "setup {plural}: {}", a.body);
    }
    (cp, api)
}

fn field<'a>(v: &'a Value, dotted: &str) -> &'a Value {
    dotted.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_owned()
}

/// The part of an object a client writes: what a refused write must leave alone.
fn written(obj: &Value) -> Value {
    let mut meta = obj["metadata"].clone();
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    json!({"metadata": meta, "spec": obj["spec"], "data": obj["data"],
           "binaryData": obj["binaryData"], "type": obj["type"], "immutable": obj["immutable"]})
}

/// The cases of one file.
fn cases(file: &Case) -> Result<Vec<Value>, String> {
    let docs = kantai_model::node::parse_documents(&file.text, Default::default())
        .map_err(|e| format!("{e}"))?;
    docs.first()
        .and_then(|d| d.to_json()["cases"].as_array().cloned())
        .ok_or_else(|| "no `cases` list".to_owned())
}

/// What the API answered to a case, as `NAME.answers` records it: the code and reason, the
/// fields its causes name, and its message.
fn recorded(name: &str, request: &str, answer: &Answer) -> String {
    let causes: Vec<String> = answer.body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| text(c, "field"))
        .collect();
    let reason = text(&answer.body, "reason");
    let mut out = format!("{name}\n  {request}\n  {}", answer.code);
    if !reason.is_empty() {
        out.push_str(&format!(" {reason}"));
    }
    out.push('\n');
    if !causes.is_empty() {
        out.push_str(&format!("  causes: {}\n", causes.join(", ")));
    }
    let message = text(&answer.body, "message");
    if !message.is_empty() {
        out.push_str(&format!("  message: {}\n", without_uids(&message)));
    }
    out
}

/// `text` with each UID (8-4-4-4-12 hex digits), which differs from run to run, as `<uid>`.
fn without_uids(text: &str) -> String {
    let is_uid = |w: &[u8]| {
        w.len() == 36
            && w.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.len() - i >= 36 && is_uid(&bytes[i..i + 36]) {
            out.push_str("<uid>");
            i += 36;
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Runs one case on a fresh control plane: what is wrong with the answer (nothing: empty),
/// and the answer as recorded.
async fn run(case: &Value) -> (Vec<String>, String, Answer) {
    let name = text(case, "name");
    let dir = tempfile::tempdir().expect("tmp");
    let (cp, api) = fleet(dir.path()).await;
    let request = text(case, "request");
    let (method, path) = request.split_once(' ').expect("METHOD PATH");
    let object_path = path
        .split('?')
        .next()
        .unwrap_or(path)
        .trim_end_matches("/status");
    let before = api.send("GET", object_path, None, "", true).await;
    let body = match (&case["body"], case["raw_body"].as_str()) {
        (_, Some(raw)) => Some(raw.as_bytes().to_vec()),
        (Value::Null, None) => case["body_base64"].as_str().map(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("body_base64")
        }),
        (b, None) => Some(serde_json::to_vec(b).expect("json")),
    };
    let ct = case["content_type"]
        .as_str()
        .unwrap_or("application/json")
        .to_owned();
    let token = case["token"] != false;
    let answer = api.send(method, path, body, &ct, token).await;
    let expect = &case["expect"];
    let mut problems = Vec::new();
    let want_code = expect["code"].as_u64().unwrap_or(0) as u16;
    // A create answers 201, any other write 200: `200` in the file means success.
    let code_ok = if want_code == 200 {
        (200..300).contains(&answer.code)
    } else {
        answer.code == want_code
    };
    if !code_ok {
        problems.push(format!("code {} (wanted {want_code})", answer.code));
    }
    if let Some(reason) = expect["reason"].as_str()
        && answer.body["reason"] != reason
    {
        problems.push(format!(
            "reason {} (wanted {reason})",
            answer.body["reason"]
        ));
    }
    if let Some(m) = expect["message"].as_str()
        && !answer.body["message"].as_str().unwrap_or("").contains(m)
    {
        problems.push(format!("message lacks {m:?}"));
    }
    // A secret's value, which no answer may quote (in any field of it).
    if let Some(h) = expect["hidden"].as_str()
        && answer.body.to_string().contains(h)
    {
        problems.push(format!("the answer quotes {h:?}"));
    }
    for (k, v) in expect["fields"].as_object().into_iter().flatten() {
        if field(&answer.body, k) != v {
            problems.push(format!(
                "answer's {k} is {} (wanted {v})",
                field(&answer.body, k)
            ));
        }
    }
    if let Some(want) = expect["causes"].as_array() {
        let got: Vec<String> = answer.body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| text(c, "field"))
            .collect();
        let want: Vec<String> = want
            .iter()
            .map(|w| w.as_str().unwrap_or("").to_owned())
            .collect();
        let mut sorted = got.clone();
        sorted.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        if sorted != want_sorted {
            problems.push(format!("causes {got:?} (wanted {want:?})"));
        }
    }
    // Core views (pods) are computed on each read and change as the controllers work:
    // only stored objects are compared.
    let view = object_path.starts_with("/api/")
        && !object_path.contains("/secrets/")
        && !object_path.contains("/configmaps/");
    if answer.code >= 400 && before.code == 200 && !view {
        let after = api.send("GET", object_path, None, "", true).await;
        if after.code != 200 || written(&after.body) != written(&before.body) {
            problems.push(format!(
                "the refused write changed {object_path}: {} -> {}",
                written(&before.body),
                written(&after.body)
            ));
        }
    }
    for check in case["then"].as_array().into_iter().flatten() {
        let p = text(check, "get");
        let got = api.send("GET", &p, None, "", true).await;
        if check["missing"] == true {
            if got.code != 404 {
                problems.push(format!("{p} exists (code {})", got.code));
            }
            continue;
        }
        if got.code != 200 {
            problems.push(format!("GET {p}: {} {}", got.code, got.body));
            continue;
        }
        for (k, v) in check["fields"].as_object().into_iter().flatten() {
            if field(&got.body, k) != v {
                problems.push(format!("{p}: {k} is {} (wanted {v})", field(&got.body, k)));
            }
        }
        for k in check["absent"].as_array().into_iter().flatten() {
            let k = k.as_str().unwrap_or("");
            if !field(&got.body, k).is_null() {
                problems.push(format!(
                    "{p}: {k} is {} (wanted absent)",
                    field(&got.body, k)
                ));
            }
        }
        for (k, v) in check["not"].as_object().into_iter().flatten() {
            if field(&got.body, k) == v {
                problems.push(format!(
                    "{p}: {k} is {v}, which the write should not have stored"
                ));
            }
        }
    }
    cp.shutdown().await;
    let record = recorded(&name, &request, &answer);
    (problems, record, answer)
}

#[test]
fn every_write_path_answers_as_kubernetes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/writes");
    let mut total = 0;
    DataDir::new(&dir, &["yaml"]).at_least(8).check(|file| {
        let cases = cases(file)?;
        if cases.is_empty() {
            return Err("no cases".to_owned());
        }
        total += cases.len();
        let mut failures = Vec::new();
        let mut answers = String::new();
        for case in &cases {
            let (problems, record, answer) = rt.block_on(run(case));
            if !problems.is_empty() {
                failures.push(format!(
                    "{}\n  {}\n  answer {}: {}\n  {}",
                    text(case, "name"),
                    text(case, "request"),
                    answer.code,
                    answer.body,
                    problems.join("\n  ")
                ));
            }
            answers.push_str(&record);
        }
        if let Err(e) = expect_file(&file.sibling("answers"), &answers) {
            failures.push(e);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} cases failed:\n\n{}",
                failures.len(),
                cases.len(),
                failures.join("\n\n")
            ))
        }
    });
    assert!(total > 30, "the case files lost their cases: {total}");
}
