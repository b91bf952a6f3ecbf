//! Just enough of Kubernetes' protobuf encoding to read what kubectl's typed client sends
//! as `application/vnd.kubernetes.protobuf` only: a Namespace (`kubectl create namespace`),
//! a Secret (`kubectl create secret`) and a ConfigMap (`kubectl create configmap`). The
//! result is the object's JSON form, admitted like any JSON body. Everything else reaches
//! kantai as JSON.
//!
//! Field numbers are those of k8s.io/api's `core/v1/generated.proto` and apimachinery's
//! `meta/v1/generated.proto`. A field kantai does not read is refused, not dropped, and no
//! error quotes a value (a Secret's may be anywhere in the body).

use base64::Engine;
use serde_json::{Map, Value, json};

/// The envelope's magic prefix.
const MAGIC: &[u8] = b"k8s\x00";

/// One field's value: a varint, or the bytes of a length-delimited field (fixed-width
/// fields are skipped: no message read here has one).
#[derive(Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Field<'a> {
    fn bytes(self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Field::Bytes(b) => Ok(b),
            Field::Varint(_) => Err(format!("{what} is a number where bytes were expected")),
        }
    }

    fn varint(self, what: &str) -> Result<u64, String> {
        match self {
            Field::Varint(v) => Ok(v),
            Field::Bytes(_) => Err(format!("{what} holds bytes where a number was expected")),
        }
    }
}

/// The fields of a message, in order.
fn fields(mut b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (key, rest) = varint(b)?;
        b = rest;
        match key & 7 {
            0 => {
                let (v, rest) = varint(b)?;
                out.push((key >> 3, Field::Varint(v)));
                b = rest;
            }
            1 => b = b.get(8..).ok_or("truncated 64-bit field")?,
            5 => b = b.get(4..).ok_or("truncated 32-bit field")?,
            2 => {
                let (len, rest) = varint(b)?;
                let len = usize::try_from(len).map_err(|_| "length too large")?;
                let v = rest.get(..len).ok_or("truncated length-delimited field")?;
                out.push((key >> 3, Field::Bytes(v)));
                b = &rest[len..];
            }
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(out)
}

fn varint(b: &[u8]) -> Result<(u64, &[u8]), String> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, &b[i + 1..]));
        }
    }
    Err("invalid varint".into())
}

fn string(f: Field<'_>, what: &str) -> Result<String, String> {
    String::from_utf8(f.bytes(what)?.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// How a map's values become JSON.
#[derive(Clone, Copy)]
enum Values {
    /// `map<string, string>`.
    Strings,
    /// `map<string, bytes>`, as JSON's base64.
    Bytes,
}

/// The entries of a map field (each a message: key = 1, value = 2) as a JSON object.
fn map(entries: &[Field<'_>], values: Values, what: &str) -> Result<Value, String> {
    let mut m = Map::new();
    for e in entries {
        let (mut k, mut v) = (String::new(), Value::String(String::new()));
        for (n, f) in fields(e.bytes(what)?)? {
            match n {
                1 => k = string(f, &format!("a key of {what}"))?,
                2 => {
                    let bytes = f.bytes(&format!("{what}[{k}]"))?;
                    v = Value::String(match values {
                        Values::Strings => String::from_utf8(bytes.to_vec())
                            .map_err(|_| format!("{what}[{k}] is not UTF-8"))?,
                        Values::Bytes => base64::engine::general_purpose::STANDARD.encode(bytes),
                    });
                }
                _ => {}
            }
        }
        m.insert(k, v);
    }
    Ok(Value::Object(m))
}

/// The object inside the envelope (`runtime.Unknown`: typeMeta = 1, raw = 2).
fn unwrap_envelope(body: &[u8]) -> Result<&[u8], String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("not a Kubernetes protobuf envelope")?;
    fields(unknown)?
        .into_iter()
        .find(|(n, _)| *n == 2)
        .ok_or_else(|| "the envelope holds no object".to_owned())?
        .1
        .bytes("the envelope's object")
}

/// An ObjectMeta: what a client may send when it creates or replaces an object. Empty
/// strings (which Go's encoder writes for unset fields) are left out.
fn metadata(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Vec::new(), Vec::new(), Vec::new());
    for (n, f) in fields(b)? {
        let name = match n {
            1 => "name",
            2 => "generateName",
            3 => "namespace",
            5 => "uid",
            6 => "resourceVersion",
            // Set by the server; what a client sends of them is dropped as Kubernetes does.
            4 | 7 | 8 | 9 | 10 => continue,
            11 => {
                labels.push(f);
                continue;
            }
            12 => {
                annotations.push(f);
                continue;
            }
            14 => {
                finalizers.push(Value::String(string(f, "metadata.finalizers")?));
                continue;
            }
            13 => return Err(unsupported("metadata.ownerReferences")),
            17 => return Err(unsupported("metadata.managedFields")),
            other => {
                return Err(format!(
                    "metadata has field {other}, which kantai does not know"
                ));
            }
        };
        let v = string(f, &format!("metadata.{name}"))?;
        if !v.is_empty() {
            m.insert(name.into(), Value::String(v));
        }
    }
    if !labels.is_empty() {
        m.insert(
            "labels".into(),
            map(&labels, Values::Strings, "metadata.labels")?,
        );
    }
    if !annotations.is_empty() {
        m.insert(
            "annotations".into(),
            map(&annotations, Values::Strings, "metadata.annotations")?,
        );
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

fn unsupported(field: &str) -> String {
    format!("kantai does not read {field} in protobuf; send the object as JSON")
}

/// Decodes a protobuf-encoded Namespace (envelope included) into its JSON form: the
/// metadata's name, labels and annotations, which is all a new namespace carries.
pub fn namespace(body: &[u8]) -> Result<Value, String> {
    let raw = unwrap_envelope(body)?;
    let meta = fields(raw)?
        .into_iter()
        .find(|(n, _)| *n == 1)
        .ok_or("the Namespace has no metadata")?
        .1;
    let meta = metadata(meta.bytes("metadata")?)?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": meta["name"].as_str().unwrap_or(""),
            "labels": meta.get("labels").cloned().unwrap_or_else(|| json!({})),
            "annotations": meta.get("annotations").cloned().unwrap_or_else(|| json!({})),
        },
    }))
}

/// Decodes a protobuf-encoded Secret (metadata = 1, data = 2, type = 3, stringData = 4,
/// immutable = 5) into its JSON form.
pub fn secret(body: &[u8]) -> Result<Value, String> {
    let mut out = json!({"apiVersion": "v1", "kind": "Secret"});
    let (mut data, mut string_data) = (Vec::new(), Vec::new());
    for (n, f) in fields(unwrap_envelope(body)?)? {
        match n {
            1 => out["metadata"] = metadata(f.bytes("metadata")?)?,
            2 => data.push(f),
            3 => {
                let t = string(f, "type")?;
                if !t.is_empty() {
                    out["type"] = Value::String(t);
                }
            }
            4 => string_data.push(f),
            5 => out["immutable"] = Value::Bool(f.varint("immutable")? != 0),
            other => {
                return Err(format!(
                    "the Secret has field {other}, which kantai does not know"
                ));
            }
        }
    }
    if !data.is_empty() {
        out["data"] = map(&data, Values::Bytes, "data")?;
    }
    if !string_data.is_empty() {
        out["stringData"] = map(&string_data, Values::Strings, "stringData")?;
    }
    Ok(out)
}

/// Decodes a protobuf-encoded ConfigMap (metadata = 1, data = 2, binaryData = 3,
/// immutable = 4) into its JSON form.
pub fn config_map(body: &[u8]) -> Result<Value, String> {
    let mut out = json!({"apiVersion": "v1", "kind": "ConfigMap"});
    let (mut data, mut binary) = (Vec::new(), Vec::new());
    for (n, f) in fields(unwrap_envelope(body)?)? {
        match n {
            1 => out["metadata"] = metadata(f.bytes("metadata")?)?,
            2 => data.push(f),
            3 => binary.push(f),
            4 => out["immutable"] = Value::Bool(f.varint("immutable")? != 0),
            other => {
                return Err(format!(
                    "the ConfigMap has field {other}, which kantai does not know"
                ));
            }
        }
    }
    if !data.is_empty() {
        out["data"] = map(&data, Values::Strings, "data")?;
    }
    if !binary.is_empty() {
        out["binaryData"] = map(&binary, Values::Bytes, "binaryData")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2];
        let mut len = bytes.len();
        while len >= 0x80 {
            v.push(u8::try_from(len & 0x7f).expect("7 bits") | 0x80);
            len >>= 7;
        }
        v.push(u8::try_from(len).expect("7 bits"));
        v.extend_from_slice(bytes);
        v
    }

    fn entry(field: u8, k: &[u8], v: &[u8]) -> Vec<u8> {
        ld(field, &[ld(1, k), ld(2, v)].concat())
    }

    fn envelope(kind: &[u8], object: &[u8]) -> Vec<u8> {
        let type_meta = [ld(1, b"v1"), ld(2, kind)].concat();
        [
            MAGIC.to_vec(),
            ld(1, &type_meta),
            ld(2, object),
            ld(3, b""),
            ld(4, b""),
        ]
        .concat()
    }

    /// As Go's encoder writes a new object's metadata: unset strings as empty fields.
    fn meta(name: &[u8]) -> Vec<u8> {
        [
            ld(1, name),
            ld(2, b""),
            ld(3, b""),
            ld(4, b""),
            ld(5, b""),
            ld(6, b""),
        ]
        .concat()
    }

    #[test]
    fn reads_what_kubectl_create_namespace_sends() {
        let label = [ld(1, b"team"), ld(2, b"edge")].concat();
        let meta = [ld(1, b"edge-apps"), ld(11, &label)].concat();
        let ns = [ld(1, &meta), ld(2, b""), ld(3, b"")].concat();
        let v = namespace(&envelope(b"Namespace", &ns)).expect("decodes");
        assert_eq!(v["metadata"]["name"], "edge-apps");
        assert_eq!(v["metadata"]["labels"]["team"], "edge");
    }

    #[test]
    fn reads_what_kubectl_create_secret_sends() {
        let binary = [0u8, 159, 146, 150];
        let secret_msg = [
            ld(1, &meta(b"db")),
            entry(2, b"password", b"s3cr3t"),
            entry(2, b"blob", &binary),
            ld(3, b"Opaque"),
            entry(4, b"extra", b"plain"),
            vec![5 << 3, 1],
        ]
        .concat();
        let v = secret(&envelope(b"Secret", &secret_msg)).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db"},
                "data": {"password": "czNjcjN0", "blob": "AJ+Slg=="},
                "type": "Opaque", "stringData": {"extra": "plain"}, "immutable": true})
        );
    }

    #[test]
    fn reads_what_kubectl_create_configmap_sends() {
        let big = "x".repeat(300);
        let cm = [
            ld(1, &meta(b"app")),
            entry(2, b"mode", b"fast"),
            entry(2, b"big", big.as_bytes()),
            entry(3, b"logo", &[0xff, 0]),
            vec![4 << 3, 0],
        ]
        .concat();
        let v = config_map(&envelope(b"ConfigMap", &cm)).expect("decodes");
        assert_eq!(v["metadata"], json!({"name": "app"}));
        assert_eq!(v["data"]["mode"], "fast");
        assert_eq!(v["data"]["big"].as_str().map(str::len), Some(300));
        assert_eq!(v["binaryData"]["logo"], "/wA=");
        assert_eq!(v["immutable"], false);
    }

    #[test]
    fn fields_kantai_does_not_read_are_refused_without_quoting_values() {
        let owner = ld(13, b"owner-ref-bytes");
        let s = [ld(1, &[meta(b"db"), owner].concat()), entry(2, b"k", b"v")].concat();
        let err = secret(&envelope(b"Secret", &s)).expect_err("ownerReferences");
        assert!(err.contains("metadata.ownerReferences"), "{err}");
        let s = [ld(1, &meta(b"db")), ld(9, b"hunter2")].concat();
        let err = secret(&envelope(b"Secret", &s)).expect_err("unknown field");
        assert!(err.contains("field 9") && !err.contains("hunter2"), "{err}");
        let s = [ld(1, &meta(b"db")), entry(4, b"k", &[0xff, b'h', b'u'])].concat();
        let err = secret(&envelope(b"Secret", &s)).expect_err("not UTF-8");
        assert!(
            err.contains("stringData[k]") && !err.contains("hu"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for f in [namespace, secret, config_map] {
            assert!(f(b"{}").is_err());
            assert!(f(b"k8s\x00\x12\xff").is_err());
            assert!(f(b"k8s\x00\x12\x05ab").is_err());
            assert!(f(b"k8s\x00\x12\x02\x28\xff").is_err());
        }
    }
}
