//! Kubernetes' core `v1` **Secret** and **ConfigMap**: decoded from the API's JSON, validated
//! and normalised as the API server admits them (`stringData` folded into `data`, `type`
//! defaulted, key names, the 1 MiB limit, `immutable`), and read back from the store.
//!
//! A Secret's values never appear in a finding or in `Debug` output: messages name the key
//! and, for base64 errors, the byte offset only.

use std::collections::BTreeMap;

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde_json::{Map, Value as Json};

use crate::decode::{Decode, Fields};
use crate::error::{FieldError, FieldPath, Findings};
use crate::meta::{NameRule, ObjectMeta};
use crate::node::{Node, Value};

/// The group/version of core objects.
pub const API_VERSION: &str = "v1";

/// Kubernetes' `MaxSecretSize`: the most a Secret's or ConfigMap's values may hold together.
pub const MAX_SIZE: usize = 1024 * 1024;

/// The `type` of a Secret that gives none.
pub const OPAQUE: &str = "Opaque";

/// Kubernetes' key rule for Secrets and ConfigMaps, as its message words it.
pub const KEY_RULE: &str = "a valid config key must consist of alphanumeric characters, '-', \
                            '_' or '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name', regex \
                            used for validation is '[-._a-zA-Z0-9]+')";

/// The message of a change `immutable: true` forbids.
pub const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

/// A core `v1` Secret. Its `Debug` shows keys and sizes, never values.
#[derive(Clone, Default, PartialEq)]
pub struct Secret {
    /// Name (a DNS-1123 subdomain), namespace, labels.
    pub metadata: ObjectMeta,
    /// `Opaque`, `kubernetes.io/tls`, ...
    pub type_: String,
    /// The values, decoded from base64.
    pub data: BTreeMap<String, Vec<u8>>,
    /// When true, `data` and `immutable` can no longer change.
    pub immutable: Option<bool>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<&str, usize> = self
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect();
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("type_", &self.type_)
            .field("data_bytes", &sizes)
            .field("immutable", &self.immutable)
            .finish()
    }
}

impl Secret {
    /// The object as the API returns it: `data` in base64, no `stringData`.
    pub fn to_json(&self) -> Json {
        let mut m = envelope("Secret", &self.metadata);
        if !self.data.is_empty() {
            m.insert("data".into(), encode_map(&self.data));
        }
        if let Some(i) = self.immutable {
            m.insert("immutable".into(), i.into());
        }
        m.insert("type".into(), self.type_.clone().into());
        Json::Object(m)
    }
}

/// A core `v1` ConfigMap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigMap {
    /// Name (a DNS-1123 subdomain), namespace, labels.
    pub metadata: ObjectMeta,
    /// UTF-8 values.
    pub data: BTreeMap<String, String>,
    /// Other bytes, decoded from base64.
    pub binary_data: BTreeMap<String, Vec<u8>>,
    /// When true, `data`, `binaryData` and `immutable` can no longer change.
    pub immutable: Option<bool>,
}

impl ConfigMap {
    /// The object as the API returns it, `binaryData` in base64.
    pub fn to_json(&self) -> Json {
        let mut m = envelope("ConfigMap", &self.metadata);
        if !self.data.is_empty() {
            let data: Map<String, Json> = self
                .data
                .iter()
                .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                .collect();
            m.insert("data".into(), Json::Object(data));
        }
        if !self.binary_data.is_empty() {
            m.insert("binaryData".into(), encode_map(&self.binary_data));
        }
        if let Some(i) = self.immutable {
            m.insert("immutable".into(), i.into());
        }
        Json::Object(m)
    }
}

fn envelope(kind: &str, meta: &ObjectMeta) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("apiVersion".into(), API_VERSION.into());
    m.insert("kind".into(), kind.into());
    m.insert(
        "metadata".into(),
        serde_json::to_value(meta).unwrap_or(Json::Null),
    );
    m
}

fn encode_map(data: &BTreeMap<String, Vec<u8>>) -> Json {
    Json::Object(
        data.iter()
            .map(|(k, v)| (k.clone(), Json::String(STANDARD.encode(v))))
            .collect(),
    )
}

/// Go's `base64.StdEncoding` as `encoding/json` reads `[]byte`: padding required, trailing
/// bits tolerated, line breaks ignored.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Decodes a base64 value, or says where it breaks in Go's words — never what the byte is,
/// since the value may be a secret.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    GO_STD.decode(&clean).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _)
            | base64::DecodeError::InvalidLastSymbol(i, _) => i,
            // A truncated last quantum: Go points at its start.
            base64::DecodeError::InvalidLength(n) => n - n % 4,
            // No padding: Go points at the last quantum's start; misplaced padding: at it.
            base64::DecodeError::InvalidPadding => match clean.iter().position(|b| *b == b'=') {
                Some(i) => i,
                None => clean.len() - clean.len() % 4,
            },
        };
        format!("illegal base64 data at input byte {at}")
    })
}

/// A string that may be a secret: a value of another type is reported by its type alone.
struct Hidden(String);

impl Decode for Hidden {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Str(s) => Some(Hidden(s.clone())),
            other => {
                out.push(FieldError {
                    pos: node.pos,
                    ..FieldError::error(
                        path.clone(),
                        format!("expected string, got {} (value not shown)", other.kind()),
                    )
                });
                None
            }
        }
    }
}

/// A map of strings that may be secrets: a map is read entry by entry as [`Hidden`], anything
/// else is reported by its type alone.
struct HiddenMap(BTreeMap<String, String>);

impl Decode for HiddenMap {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Map(_) | Value::Null => {
                let m: BTreeMap<String, Hidden> = Decode::decode(node, path, out)?;
                Some(HiddenMap(m.into_iter().map(|(k, v)| (k, v.0)).collect()))
            }
            other => {
                out.push(FieldError {
                    pos: node.pos,
                    ..FieldError::error(
                        path.clone(),
                        format!("expected object, got {} (value not shown)", other.kind()),
                    )
                });
                None
            }
        }
    }
}

/// Reads a map of base64 strings, naming each bad entry (`data[password]: illegal base64
/// data at input byte 4`).
fn decode_bytes_map(
    f: &mut Fields<'_>,
    name: &'static str,
    out: &mut Findings,
) -> BTreeMap<String, Vec<u8>> {
    let path = f.path().field(name);
    let text: Option<HiddenMap> = f.opt(name, out);
    let mut m = BTreeMap::new();
    for (k, v) in text.map(|t| t.0).unwrap_or_default() {
        match decode_base64(&v) {
            Ok(bytes) => {
                m.insert(k, bytes);
            }
            Err(msg) => out.push(FieldError::error(path.key(k), msg)),
        }
    }
    m
}

/// The fields a Secret is read with: those of the body as sent, `stringData` included.
pub fn secret_fields() -> crate::decode::FieldNames {
    crate::decode::fields_of::<SecretBody>()
}

/// A Secret as sent, before `stringData` is folded in.
struct SecretBody {
    secret: Secret,
    string_data: BTreeMap<String, String>,
}

impl Decode for SecretBody {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        envelope_fields(&mut f, "Secret", out);
        let metadata = f.req("metadata", out).unwrap_or_default();
        let type_: Option<String> = f.opt("type", out);
        let data = decode_bytes_map(&mut f, "data", out);
        let string_data: Option<HiddenMap> = f.opt("stringData", out);
        let string_data = string_data.map(|m| m.0).unwrap_or_default();
        let immutable = f.opt("immutable", out);
        f.close(out);
        Some(SecretBody {
            secret: Secret {
                metadata,
                type_: type_
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| OPAQUE.into()),
                data,
                immutable,
            },
            string_data,
        })
    }
}

impl SecretBody {
    /// The Secret the API stores: `stringData` wins over `data`, as the API server's
    /// conversion does.
    fn merged(self) -> Secret {
        let mut s = self.secret;
        for (k, v) in self.string_data {
            s.data.insert(k, v.into_bytes());
        }
        s
    }
}

impl Decode for ConfigMap {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        envelope_fields(&mut f, "ConfigMap", out);
        let cm = ConfigMap {
            metadata: f.req("metadata", out).unwrap_or_default(),
            data: f.or_default("data", out),
            binary_data: decode_bytes_map(&mut f, "binaryData", out),
            immutable: f.opt("immutable", out),
        };
        f.close(out);
        Some(cm)
    }
}

/// `apiVersion` and `kind`, when given, must be this kind's.
fn envelope_fields(f: &mut Fields<'_>, kind: &'static str, out: &mut Findings) {
    let path = f.path().clone();
    let v: Option<String> = f.opt("apiVersion", out);
    if let Some(v) = v.filter(|v| v != API_VERSION) {
        out.push(FieldError::invalid(
            path.field("apiVersion"),
            v,
            "a Secret or ConfigMap is core v1: apiVersion must be v1",
        ));
    }
    let k: Option<String> = f.opt("kind", out);
    if let Some(k) = k.filter(|k| k != kind) {
        out.push(FieldError::invalid(
            path.field("kind"),
            k,
            &format!("must be {kind}"),
        ));
    }
}

/// Kubernetes' `IsConfigMapKey`: every reason `key` is not a valid key.
pub fn key_problems(key: &str) -> Vec<String> {
    let mut p = Vec::new();
    if key.len() > 253 {
        p.push("must be no more than 253 characters".to_owned());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        p.push(KEY_RULE.to_owned());
    }
    if key == "." {
        p.push("must not be '.'".to_owned());
    } else if key == ".." {
        p.push("must not be '..'".to_owned());
    } else if key.starts_with("..") {
        p.push("must not start with '..'".to_owned());
    }
    p
}

fn check_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &FieldPath, out: &mut Findings) {
    for k in keys {
        for p in key_problems(k) {
            out.push(FieldError::invalid(path.key(k.clone()), k, &p));
        }
    }
}

fn too_long(path: FieldPath) -> FieldError {
    FieldError::error(
        path,
        format!("Too long: must have at most {MAX_SIZE} bytes"),
    )
}

/// Kubernetes' `ValidateSecret`: name, keys, size and what each built-in type requires.
fn validate_secret(s: &Secret, out: &mut Findings) {
    let meta = FieldPath::fields("metadata");
    crate::meta::validate(&s.metadata, &meta, NameRule::Dns1123Subdomain, out);
    let data = FieldPath::fields("data");
    check_keys(s.data.keys(), &data, out);
    let total: usize = s.data.values().map(Vec::len).sum();
    if total > MAX_SIZE {
        out.push(too_long(data.clone()));
    }
    let required = |key: &'static str, out: &mut Findings| {
        out.push(FieldError::missing(data.key(key)));
    };
    let has = |key: &str| s.data.contains_key(key);
    let sa_name = "kubernetes.io/service-account.name";
    match s.type_.as_str() {
        "kubernetes.io/service-account-token" if !s.metadata.annotations.contains_key(sa_name) => {
            out.push(FieldError::missing(meta.field("annotations").key(sa_name)));
        }
        "kubernetes.io/dockercfg" => docker_json(s, ".dockercfg", &data, out),
        "kubernetes.io/dockerconfigjson" => docker_json(s, ".dockerconfigjson", &data, out),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            required("username", out);
            required("password", out);
        }
        "kubernetes.io/ssh-auth" if s.data.get("ssh-privatekey").is_none_or(Vec::is_empty) => {
            required("ssh-privatekey", out);
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                required("tls.crt", out);
            }
            if !has("tls.key") {
                required("tls.key", out);
            }
        }
        _ => {}
    }
}

/// A docker config Secret's key must be present and hold JSON; the message says so without
/// quoting it (Kubernetes writes `<secret contents redacted>`).
fn docker_json(s: &Secret, key: &'static str, data: &FieldPath, out: &mut Findings) {
    match s.data.get(key) {
        None => out.push(FieldError::missing(data.key(key))),
        Some(v) => {
            if let Err(e) = serde_json::from_slice::<Json>(v) {
                out.push(FieldError::error(
                    data.key(key),
                    format!(
                        "invalid value <secret contents redacted>: not JSON (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                ));
            }
        }
    }
}

/// Kubernetes' `ValidateConfigMap`: name, keys of both maps, no key in both, size.
fn validate_config_map(c: &ConfigMap, out: &mut Findings) {
    let meta = FieldPath::fields("metadata");
    crate::meta::validate(&c.metadata, &meta, NameRule::Dns1123Subdomain, out);
    let data = FieldPath::fields("data");
    let binary = FieldPath::fields("binaryData");
    check_keys(c.data.keys(), &data, out);
    check_keys(c.binary_data.keys(), &binary, out);
    for k in c.data.keys().filter(|k| c.binary_data.contains_key(*k)) {
        out.push(FieldError::invalid(
            data.key(k.clone()),
            k,
            "duplicate of key present in binaryData",
        ));
        out.push(FieldError::invalid(
            binary.key(k.clone()),
            k,
            "duplicate of key present in data",
        ));
    }
    let total: usize = c.data.values().map(String::len).sum::<usize>()
        + c.binary_data.values().map(Vec::len).sum::<usize>();
    if total > MAX_SIZE {
        out.push(too_long(FieldPath::root()));
    }
}

fn forbidden_when_immutable(field: &'static str, out: &mut Findings) {
    out.push(FieldError::error(FieldPath::fields(field), IMMUTABLE_SET));
}

/// What a body's `metadata` was, verbatim: the control plane's admission owns uid,
/// resourceVersion and the rest.
fn given_metadata(body: &Json) -> Json {
    body.get("metadata")
        .cloned()
        .unwrap_or_else(|| Json::Object(Map::new()))
}

fn decoded<T: Decode>(body: &Json) -> (Option<T>, Findings) {
    let mut out = Findings::new();
    let v = T::decode(&Node::from_json(body), &FieldPath::root(), &mut out);
    (v, out)
}

/// Admits a Secret as the API server does: decodes it, folds `stringData` into `data`,
/// defaults `type` to `Opaque`, validates it and, on an update, checks it against `old`
/// (the stored object): `type` never changes, and `immutable: true` freezes `data` and
/// itself. Returns the object to store (metadata as given, no `stringData`).
pub fn admit_secret(body: &Json, old: Option<&Json>) -> Result<Json, Findings> {
    let (s, mut out) = decoded::<SecretBody>(body);
    let Some(s) = s else { return Err(out) };
    let s = s.merged();
    validate_secret(&s, &mut out);
    if let Some(old) = old {
        let old = secret_from_json(old)?;
        if old.type_ != s.type_ {
            out.push(FieldError::error(
                FieldPath::fields("type"),
                "field is immutable",
            ));
        }
        if old.immutable == Some(true) {
            if s.immutable != Some(true) {
                forbidden_when_immutable("immutable", &mut out);
            }
            if s.data != old.data {
                forbidden_when_immutable("data", &mut out);
            }
        }
    }
    if out.has_errors() {
        return Err(out);
    }
    let mut m = Map::new();
    m.insert("apiVersion".into(), API_VERSION.into());
    m.insert("kind".into(), "Secret".into());
    m.insert("metadata".into(), given_metadata(body));
    if !s.data.is_empty() {
        m.insert("data".into(), encode_map(&s.data));
    }
    if let Some(i) = s.immutable {
        m.insert("immutable".into(), i.into());
    }
    m.insert("type".into(), s.type_.into());
    Ok(Json::Object(m))
}

/// Admits a ConfigMap as the API server does: decodes and validates it and, on an update,
/// refuses changes `immutable: true` forbids. Returns the object to store (metadata as given).
pub fn admit_config_map(body: &Json, old: Option<&Json>) -> Result<Json, Findings> {
    let (c, mut out) = decoded::<ConfigMap>(body);
    let Some(c) = c else { return Err(out) };
    validate_config_map(&c, &mut out);
    if let Some(old) = old {
        let old = config_map_from_json(old)?;
        if old.immutable == Some(true) {
            if c.immutable != Some(true) {
                forbidden_when_immutable("immutable", &mut out);
            }
            if c.data != old.data {
                forbidden_when_immutable("data", &mut out);
            }
            if c.binary_data != old.binary_data {
                forbidden_when_immutable("binaryData", &mut out);
            }
        }
    }
    if out.has_errors() {
        return Err(out);
    }
    let mut m = Map::new();
    m.insert("apiVersion".into(), API_VERSION.into());
    m.insert("kind".into(), "ConfigMap".into());
    m.insert("metadata".into(), given_metadata(body));
    let mut typed = c.to_json();
    for key in ["data", "binaryData", "immutable"] {
        if let Some(v) = typed.as_object_mut().and_then(|t| t.remove(key)) {
            m.insert(key.into(), v);
        }
    }
    Ok(Json::Object(m))
}

/// Reads a stored Secret (any `stringData` folded in; the rules are not checked again).
pub fn secret_from_json(json: &Json) -> Result<Secret, Findings> {
    let (s, out) = decoded::<SecretBody>(json);
    match s {
        Some(s) if !out.has_errors() => Ok(s.merged()),
        _ => Err(out),
    }
}

/// Reads a stored ConfigMap (the rules are not checked again).
pub fn config_map_from_json(json: &Json) -> Result<ConfigMap, Findings> {
    let (c, out) = decoded::<ConfigMap>(json);
    match c {
        Some(c) if !out.has_errors() => Ok(c),
        _ => Err(out),
    }
}
