//! Names and URLs: DNS-1035/1123 checks, revision names (`hello-00001`) and route hosts.

/// Longest Kubernetes object name that is a DNS label.
pub const DNS_LABEL_MAX: usize = 63;

/// DNS-1035 label: lowercase letters, digits and `-`, starting with a letter, ending with a
/// letter or digit, at most 63 characters. Knative Service, Configuration, Revision and Route
/// names must be DNS-1035 labels.
pub fn is_dns1035_label(s: &str) -> bool {
    dns1035_problem(s).is_none()
}

/// Why `s` is not a DNS-1035 label, in Kubernetes' words.
pub fn dns1035_problem(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Some("must not be empty".into());
    }
    if b.len() > DNS_LABEL_MAX {
        return Some(format!(
            "must be no more than {DNS_LABEL_MAX} characters (it has {})",
            b.len()
        ));
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        return Some(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-'".into(),
        );
    }
    if !b[0].is_ascii_lowercase() {
        return Some("a DNS-1035 label must start with a lowercase letter".into());
    }
    if b[b.len() - 1] == b'-' {
        return Some("a DNS-1035 label must end with a lowercase letter or digit".into());
    }
    None
}

/// DNS-1123 label: like DNS-1035 but may start with a digit (namespaces, tags).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= DNS_LABEL_MAX
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Why `key` is not a valid Kubernetes label or annotation key (`[prefix/]name`), if it is not.
pub fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Some(format!(
            "prefix {p:?} must be a DNS subdomain such as example.com"
        ));
    }
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return Some("name part must be 1 to 63 characters".into());
    }
    let ok_inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    if !b.iter().all(ok_inner)
        || !b[0].is_ascii_alphanumeric()
        || !b[b.len() - 1].is_ascii_alphanumeric()
    {
        return Some(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character"
                .into(),
        );
    }
    None
}

/// Whether `v` is a valid label value (empty, or up to 63 of `[A-Za-z0-9_.-]`, starting and
/// ending alphanumeric).
pub fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// A child object's name, `parent + suffix`, kept within 63 characters the way Knative's
/// `kmeta.ChildName` does: when too long, the parent is shortened and a hash of the full name
/// keeps it unique.
pub fn child_name(parent: &str, suffix: &str) -> String {
    let full = format!("{parent}{suffix}");
    if full.len() <= DNS_LABEL_MAX {
        return full;
    }
    let hash = format!("{:016x}", kantai_policy::stable_hash(parent.as_bytes()));
    let keep = DNS_LABEL_MAX.saturating_sub(hash.len() + suffix.len());
    let mut head: String = parent.chars().take(keep).collect();
    // A label may not have `-` next to the hash in a way that leaves `--` or a trailing `-`
    // harmlessly; trimming keeps names tidy.
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}{hash}{suffix}")
}

/// Characters of a generated name's suffix: Kubernetes' (no vowels, no look-alikes), so that
/// no word appears by chance.
const SUFFIX_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Length of a generated name's suffix (`generateName`, instance names).
pub const SUFFIX_LEN: usize = 5;

/// A random suffix for a generated name, drawn from the generator passed in.
pub fn random_suffix(rng: &mut impl rand::RngExt) -> String {
    (0..SUFFIX_LEN)
        .map(|_| char::from(SUFFIX_CHARS[rng.random_range(0..SUFFIX_CHARS.len())]))
        .collect()
}

/// `prefix` + a random suffix, the prefix cut so that the whole stays a DNS label (what
/// Kubernetes makes of `metadata.generateName`).
pub fn generate_name(prefix: &str, rng: &mut impl rand::RngExt) -> String {
    let cut: String = prefix.chars().take(DNS_LABEL_MAX - SUFFIX_LEN).collect();
    format!("{cut}{}", random_suffix(rng))
}

/// The name of a configuration's revision of a given generation: `hello-00001`.
pub fn revision_name(configuration: &str, generation: i64) -> String {
    child_name(configuration, &format!("-{generation:05}"))
}

/// The external host of a route: `{name}.{namespace}.{domain}` (Knative's default
/// `domain-template`).
pub fn route_host(name: &str, namespace: &str, domain: &str) -> String {
    format!("{name}.{namespace}.{domain}")
}

/// The host of a tagged target: `{tag}-{name}.{namespace}.{domain}` (Knative's default
/// `tag-template`).
pub fn tag_host(tag: &str, name: &str, namespace: &str, domain: &str) -> String {
    format!("{tag}-{name}.{namespace}.{domain}")
}

/// The cluster-local address of a route.
pub fn cluster_local_host(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.cluster.local")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_keep_the_prefix_and_stay_labels() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let n = generate_name("hello-", &mut rng);
        assert!(n.starts_with("hello-") && n.len() == 11, "{n}");
        assert!(n[6..].bytes().all(|c| SUFFIX_CHARS.contains(&c)), "{n}");
        let long = generate_name(&"a".repeat(80), &mut rng);
        assert_eq!(long.len(), DNS_LABEL_MAX);
        assert!(is_dns1035_label(&long));
    }

    #[test]
    fn dns1035() {
        assert!(is_dns1035_label("hello"));
        assert!(is_dns1035_label("a-1"));
        for bad in ["", "1abc", "Hello", "a_b", "a-", "a.b", &"a".repeat(64)] {
            assert!(!is_dns1035_label(bad), "{bad:?}");
        }
        assert!(is_dns1123_label("1abc"));
    }

    #[test]
    fn revision_names_are_zero_padded_and_bounded() {
        assert_eq!(revision_name("hello", 1), "hello-00001");
        assert_eq!(revision_name("hello", 123456), "hello-123456");
        let long = "a".repeat(60);
        let n = revision_name(&long, 1);
        assert!(n.len() <= 63, "{n}");
        assert!(n.ends_with("-00001"));
        assert!(is_dns1035_label(&n));
        assert_ne!(n, revision_name(&"a".repeat(61), 1));
    }

    #[test]
    fn a_shortened_child_name_keeps_its_hash_of_the_parent() {
        // Names already stored must not change: the hash is FNV-1a 64 of the full parent.
        let n = revision_name(&"a".repeat(60), 1);
        assert_eq!(n, format!("{}895a07966195c431-00001", "a".repeat(41)));
    }

    #[test]
    fn annotation_keys() {
        assert_eq!(
            qualified_name_problem("autoscaling.knative.dev/min-scale"),
            None
        );
        assert_eq!(qualified_name_problem("app"), None);
        assert!(qualified_name_problem("bad key").is_some());
        assert!(qualified_name_problem("Example.com/x").is_some());
    }

    #[test]
    fn urls_follow_knative_templates() {
        assert_eq!(
            route_host("hello", "default", "example.com"),
            "hello.default.example.com"
        );
        assert_eq!(
            tag_host("v2", "hello", "default", "example.com"),
            "v2-hello.default.example.com"
        );
    }
}
