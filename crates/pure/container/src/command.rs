//! What runs: the argument vector, from the container's `command` and `args` and the image's
//! `Entrypoint` and `Cmd`, with Kubernetes' `$(VAR)` references expanded.

use std::collections::BTreeMap;

/// Expands `$(VAR)` references in `input` from `vars`, as Kubernetes does for a container's
/// `command`, `args` and env values (`third_party/forked/golang/expansion`).
///
/// `$$` is an escaped `$`; a reference to a name not in `vars`, an unterminated `$(` and a
/// `$` before any other character are left as written.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(close) => {
                    let name = &body[..close];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[close + 1..];
                }
                // Kubernetes copies the `$(` and carries on scanning after it, so a
                // reference later in the string still expands.
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Kubernetes' rule for what runs: command/args vs the image's Entrypoint/Cmd.
///
/// A `command` replaces the image's Entrypoint and drops its Cmd; `args` alone replace only
/// the Cmd; neither runs Entrypoint + Cmd. This is containerd's CRI rule (taken from Docker's
/// `commit.go`), including that an Entrypoint of `[""]`, Docker's way of resetting it, counts
/// as none. An empty result means nothing to run; [`crate::runtime_spec`] refuses it.
pub fn argv(
    command: &[String],
    args: &[String],
    entrypoint: &[String],
    cmd: &[String],
) -> Vec<String> {
    if !command.is_empty() {
        return command.iter().chain(args).cloned().collect();
    }
    let entrypoint: &[String] = if entrypoint.len() == 1 && entrypoint[0].is_empty() {
        &[]
    } else {
        entrypoint
    };
    let args = if args.is_empty() { cmd } else { args };
    entrypoint.iter().chain(args).cloned().collect()
}

/// The container's `command` and `args` with `$(VAR)` references expanded from `vars`, as the
/// kubelet does before the runtime sees them (the image's Entrypoint and Cmd are never
/// expanded).
pub fn expand_all(items: &[String], vars: &BTreeMap<String, String>) -> Vec<String> {
    items.iter().map(|s| expand(s, vars)).collect()
}
