//! The manifest parser must never panic, whatever bytes it is given: property tests over
//! arbitrary bytes, YAML-shaped token soup and mutations of a real manifest. This is the short
//! smoke run of the fuzzing that `PROPTEST_CASES` can make as long as wanted.

use kantai_model::ServingConfig;
use kantai_model::manifest;
use proptest::prelude::*;

const HELLO: &str = include_str!("../../../../examples/hello.yaml");

fn check(text: &str) {
    let config = ServingConfig::default();
    match manifest::read(text, &config) {
        Err(e) => assert!(!e.message.is_empty()),
        Ok(docs) => {
            for d in docs {
                // Every rejected document says why.
                if !d.is_valid() {
                    assert!(!d.report_lines().is_empty(), "silent rejection of {text:?}");
                }
                // Whatever was understood can be written back out.
                if let Some(o) = &d.object {
                    let _ = manifest::to_yaml(std::slice::from_ref(o));
                }
            }
        }
    }
    let _ = ServingConfig::parse(text);
}

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "apiVersion: serving.knative.dev/v1\n",
        "kind: Service\n",
        "metadata:\n",
        "spec:\n",
        "  template:\n",
        "    spec:\n",
        "containers:\n",
        "- image: x\n",
        "- ",
        ": ",
        "\n",
        "  ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "&a ",
        "*a",
        "<<: *a\n",
        "!!str ",
        "\"",
        "'",
        "#",
        "---\n",
        "...\n",
        "name: hello\n",
        "percent: 100\n",
        "traffic:\n",
        "~",
        "null",
        "-1",
        "1e999",
        "0x1F",
        ".inf",
        "autoscaling.knative.dev/window: \"12s\"\n",
        "annotations:\n",
        "\t",
        "|\n",
        ">\n",
        "? ",
        "%YAML 1.2\n",
        "\u{feff}",
        "é",
        "\u{0}",
    ]);
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_shaped_input_never_panics(text in yamlish()) {
        check(&text);
    }

    #[test]
    fn mutated_manifests_never_panic(
        edits in prop::collection::vec((0..HELLO.len(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut bytes = HELLO.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len());
            match op {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => { bytes.remove(at); }
                _ if at < bytes.len() => bytes[at] = byte,
                _ => {}
            }
        }
        check(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn pathological_inputs_are_rejected_cleanly() {
    for text in [
        "[".repeat(10_000),
        "a: &a [*a]\n".to_owned(),
        format!("{}{}", "- ".repeat(5_000), "x"),
        "a: b\n".repeat(100_000),
        "x: \"\\uD800\"\n".to_owned(),
    ] {
        check(&text);
    }
}
