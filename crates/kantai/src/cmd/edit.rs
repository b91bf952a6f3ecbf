//! `kantai edit`: an object opened in the user's editor as YAML, then replaced with the
//! resourceVersion it was read at, as `kubectl edit` does. The file may hold a Secret, so
//! it lives in a private directory and is gone when the command ends.

use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use kantai_api::resources::Resource;
use kantai_api::{ApiError, Client};
use kantai_model::meta::JsonMeta;
use kantai_model::node::{ParseLimits, parse_documents};
use serde_json::Value;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::client::{self, Conn};

/// Arguments of `kantai edit`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: Conn,
    /// The resource (`secret`, `configmap`, `ksvc`, ...), or `KIND/NAME`.
    resource: String,
    /// The object's name.
    name: Option<String>,
}

/// What kubectl writes above the object.
const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,\n\
# and an empty file will abort the edit. If an error occurs while saving this file will be\n\
# reopened with the relevant failures.\n#\n";

/// The signals that end the command while it waits: the editor gets SIGTERM and the file is
/// removed. Ctrl-C and Ctrl-\ go to the editor (it shares the terminal) and are its to
/// handle, as `system(3)` leaves them.
struct Signals {
    int: Signal,
    quit: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        let on = |k| signal(k).context("cannot watch for signals");
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            quit: on(SignalKind::quit())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// Any signal that ends the command (Ctrl-C included, outside the editor).
    async fn any(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.quit.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// A private directory holding the file being edited, removed when dropped.
struct Scratch {
    dir: PathBuf,
    file: PathBuf,
}

impl Scratch {
    fn new(r: Resource, name: &str) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "kantai-edit-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let file = dir.join(format!("{}-{name}.yaml", r.singular));
        Ok(Scratch { dir, file })
    }

    /// Writes the text to a new file only the user can read (an editor may have replaced the
    /// previous one).
    fn write(&self, text: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let _ = std::fs::remove_file(&self.file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.file)
            .with_context(|| format!("cannot create {}", self.file.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", self.file.display()))
    }

    fn read(&self) -> anyhow::Result<String> {
        crate::input::read(&self.file).map(|i| i.text)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One reason the edited file was not saved: a line for the terminal, and the lines for
/// the file's header when it is reopened (they may quote the file, a Secret's values too).
struct Problem {
    short: String,
    detail: String,
}

/// `kantai edit`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (r, name) = client::target(&args.resource, args.name.as_deref())?;
    let api = args.conn.client()?;
    client::rt()?.block_on(edit(&api, r, &args.conn.namespace, &name))
}

async fn edit(api: &Client, r: Resource, ns: &str, name: &str) -> anyhow::Result<ExitCode> {
    let what = client::shown(r, name);
    let mut original = match api.get(r, ns, name).await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            eprintln!("Error from server (NotFound): {e}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let version = Value::from(original.resource_version());
    // As kubectl, managed fields are not shown; a replace without them keeps them.
    if let Some(m) = original["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    // From here on a signal must not end the process before the file is removed.
    let mut signals = Signals::new()?;
    let scratch = Scratch::new(r, name)?;
    let interactive = std::io::stdin().is_terminal();
    let mut body = kantai_model::manifest::to_yaml_one(&original);
    let mut offered = Some(original.clone());
    let mut problems: Vec<Problem> = Vec::new();
    let mut first = true;
    loop {
        let mut text = HEADER.to_owned();
        if !problems.is_empty() {
            text.push_str(&format!("# {what} was not valid:\n"));
            for p in &problems {
                for l in p.detail.lines() {
                    text.push_str(&format!("# {l}\n"));
                }
            }
            text.push_str("#\n");
        }
        text.push_str(&body);
        scratch.write(&text)?;
        let ran = run_editor(&scratch.file, &mut signals).await;
        // Read back at once: the file is of no use once the editor is closed.
        let edited = ran.and_then(|()| scratch.read());
        let _ = std::fs::remove_file(&scratch.file);
        let edited = edited?;
        let edited_body = strip_comments(&edited);
        let parsed = match parse_documents(&edited, ParseLimits::default()) {
            Ok(docs) if docs.is_empty() => {
                eprintln!("Edit cancelled, saved file was empty.");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(docs) if docs.len() > 1 => {
                let m = format!(
                    "the file holds {} YAML documents; it must hold one object",
                    docs.len()
                );
                Err(Problem {
                    short: m.clone(),
                    detail: m,
                })
            }
            Ok(docs) => Ok(docs[0].to_json()),
            Err(_) if edited_body.trim().is_empty() => {
                eprintln!("Edit cancelled, saved file was empty.");
                return Ok(ExitCode::SUCCESS);
            }
            // The parser's message quotes the text around the error: into the file only.
            Err(e) => Err(Problem {
                short: format!("the file is not valid YAML (line {})", e.pos.line),
                detail: format!("the file is not valid YAML:\n{}", e.message),
            }),
        };
        let unchanged = match &parsed {
            Ok(v) => offered.as_ref() == Some(v),
            Err(_) => !first && edited_body == body,
        };
        if unchanged {
            if first {
                eprintln!("Edit cancelled, no changes made.");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("error: Edit cancelled, no valid changes were saved.");
            for p in &problems {
                eprintln!("  {}", p.short);
            }
            return Ok(ExitCode::FAILURE);
        }
        problems = match parsed {
            Err(p) => vec![p],
            Ok(mut obj) => {
                if obj["apiVersion"] != original["apiVersion"]
                    || obj["kind"] != original["kind"]
                    || obj.name() != original.name()
                {
                    eprintln!("error: At least one of apiVersion, kind and name was changed");
                    return Ok(ExitCode::FAILURE);
                }
                // The version read, whatever the file says: a change made meanwhile by
                // someone else is a conflict, never overwritten.
                if obj["metadata"].is_object() {
                    obj["metadata"]["resourceVersion"] = version.clone();
                }
                let sent = tokio::select! {
                    s = api.replace(r, ns, name, &obj) => s,
                    () = signals.any() => {
                        eprintln!("error: interrupted; the change may or may not have been saved");
                        return Ok(ExitCode::from(130));
                    }
                };
                match sent {
                    Ok(_) => {
                        println!("{what} edited");
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) if e.is_conflict() => {
                        eprintln!(
                            "error: {what} was changed since it was read (resourceVersion {}), so \
                             nothing was saved; run `kantai edit {} {name} -n {ns}` again to edit \
                             the latest version",
                            text_of(&version),
                            r.singular
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                    Err(e) if matches!(e.code(), Some(400 | 422)) => status_problems(&e),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if !interactive {
            // An editor that is not interactive cannot fix the file: say why and stop.
            eprintln!("error: {what} was not saved:");
            for p in &problems {
                eprintln!("  {}", p.short);
            }
            return Ok(ExitCode::FAILURE);
        }
        first = false;
        offered = match parse_documents(&edited_body, ParseLimits::default()) {
            Ok(docs) if docs.len() == 1 => Some(docs[0].to_json()),
            _ => None,
        };
        body = edited_body;
    }
}

/// The API's answer: its message, then each cause.
fn status_problems(e: &ApiError) -> Vec<Problem> {
    let mut out = vec![Problem {
        short: e.to_string(),
        detail: e.to_string(),
    }];
    if let ApiError::Status(s) = e
        && let Some(d) = &s.details
    {
        for c in &d.causes {
            let l = format!("* {}: {}", c.field, c.message);
            out.push(Problem {
                short: l.clone(),
                detail: l,
            });
        }
    }
    out
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The text without the comment lines kubectl adds (for reopening it).
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with('#') && !t.starts_with("#!") {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The editor's command line, as kubectl builds it: `$KUBE_EDITOR`, else `$EDITOR`, else
/// `vi`; split on spaces, or given to the shell when it holds quotes or backslashes.
fn editor_command(file: &Path) -> (String, Vec<String>) {
    let editor = ["KUBE_EDITOR", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    let path = file.display().to_string();
    if editor.contains(['"', '\'', '\\']) {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_owned());
        let quoted = format!("'{}'", path.replace('\'', r"'\''"));
        return (shell, vec!["-c".into(), format!("{editor} {quoted}")]);
    }
    let mut words = editor
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned);
    let program = words.next().unwrap_or_else(|| "vi".to_owned());
    let mut args: Vec<String> = words.collect();
    args.push(path);
    (program, args)
}

async fn run_editor(file: &Path, signals: &mut Signals) -> anyhow::Result<()> {
    let (program, args) = editor_command(file);
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!("cannot start the editor {program:?} (set KUBE_EDITOR or EDITOR)")
        })?;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s.context("cannot wait for the editor")?,
            _ = signals.int.recv() => {}
            _ = signals.quit.recv() => {}
            _ = signals.term.recv() => return stop(&mut child).await,
            _ = signals.hup.recv() => return stop(&mut child).await,
        }
    };
    if !status.success() {
        bail!("there was a problem with the editor {program:?} ({status}); nothing was saved");
    }
    Ok(())
}

async fn stop(child: &mut tokio::process::Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = child.wait().await;
    bail!("interrupted while the editor ran; nothing was saved")
}
