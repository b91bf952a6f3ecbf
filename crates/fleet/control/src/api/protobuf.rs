//! Just enough of Kubernetes' protobuf encoding to read a Namespace: kubectl's typed client
//! sends core objects (`kubectl create namespace`) as `application/vnd.kubernetes.protobuf`
//! only. Everything else reaches kantai as JSON.

use serde_json::{Map, Value, json};

/// The envelope's magic prefix.
const MAGIC: &[u8] = b"k8s\x00";

/// One field of a message: its number and its value (varints and fixed-width values are
/// skipped; kantai reads only strings and messages).
fn fields(mut b: &[u8]) -> Result<Vec<(u64, &[u8])>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (key, rest) = varint(b)?;
        b = rest;
        match key & 7 {
            0 => b = varint(b)?.1,
            1 => b = b.get(8..).ok_or("truncated 64-bit field")?,
            5 => b = b.get(4..).ok_or("truncated 32-bit field")?,
            2 => {
                let (len, rest) = varint(b)?;
                let len = usize::try_from(len).map_err(|_| "length too large")?;
                let v = rest.get(..len).ok_or("truncated length-delimited field")?;
                out.push((key >> 3, v));
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

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string is not UTF-8".to_owned())
}

/// A map<string,string> entry list (field `n` repeated) as a JSON object.
fn string_map(entries: &[&[u8]]) -> Result<Value, String> {
    let mut m = Map::new();
    for e in entries {
        let (mut k, mut v) = (String::new(), String::new());
        for (n, b) in fields(e)? {
            match n {
                1 => k = string(b)?,
                2 => v = string(b)?,
                _ => {}
            }
        }
        m.insert(k, Value::String(v));
    }
    Ok(Value::Object(m))
}

/// Decodes a protobuf-encoded Namespace (envelope included) into its JSON form: the
/// metadata's name, labels and annotations, which is all a new namespace carries.
pub fn namespace(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("not a Kubernetes protobuf envelope")?;
    let raw = fields(unknown)?
        .into_iter()
        .find(|(n, _)| *n == 2)
        .map(|(_, b)| b)
        .ok_or("the envelope holds no object")?;
    let meta = fields(raw)?
        .into_iter()
        .find(|(n, _)| *n == 1)
        .map(|(_, b)| b)
        .ok_or("the Namespace has no metadata")?;
    let (mut name, mut labels, mut annotations) = (String::new(), Vec::new(), Vec::new());
    for (n, b) in fields(meta)? {
        match n {
            1 => name = string(b)?,
            11 => labels.push(b),
            12 => annotations.push(b),
            _ => {}
        }
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": string_map(&labels)?,
            "annotations": string_map(&annotations)?,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, u8::try_from(bytes.len()).expect("short")];
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn reads_what_kubectl_create_namespace_sends() {
        let label = [ld(1, b"team"), ld(2, b"edge")].concat();
        let meta = [ld(1, b"edge-apps"), ld(11, &label)].concat();
        let ns = [ld(1, &meta), ld(2, b""), ld(3, b"")].concat();
        let type_meta = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        let body = [
            MAGIC.to_vec(),
            ld(1, &type_meta),
            ld(2, &ns),
            ld(3, b""),
            ld(4, b""),
        ]
        .concat();
        let v = namespace(&body).expect("decodes");
        assert_eq!(v["metadata"]["name"], "edge-apps");
        assert_eq!(v["metadata"]["labels"]["team"], "edge");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(namespace(b"{}").is_err());
        assert!(namespace(b"k8s\x00\x12\xff").is_err());
        assert!(namespace(b"k8s\x00\x12\x05ab").is_err());
    }
}
