//! Who runs: uid, primary gid and supplementary groups, resolved against the rootfs's
//! `/etc/passwd` and `/etc/group` as containerd and runc resolve them.

use serde::{Deserialize, Serialize};

use crate::SpecError;
use crate::security::{Security, check_run_as_non_root};

/// The identity the container's process runs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary gids, the primary one first.
    pub additional_gids: Vec<u32>,
    /// The user's home directory: the passwd entry's, else `/`.
    pub home: String,
}

/// Who runs: securityContext.runAsUser/runAsGroup, else the image's User (`name`, `uid`, `name:group`, `uid:gid`), resolved against passwd/group; root when nothing says.
///
/// The rules are containerd's (`oci.WithUser`, `WithUserID`, `WithAdditionalGIDs`):
/// - `runAsUser` replaces the image's User entirely; its gid is the passwd entry's, else 0.
/// - A numeric image user not in passwd runs with gid 0; a user name not in passwd is an error.
/// - The group part of the image's User, or `runAsGroup`, sets the primary gid; `runAsGroup`
///   without `runAsUser` keeps the image's user (CRI-O's reading; containerd refuses it, which
///   breaks pods that are valid Kubernetes).
/// - Supplementary groups are the primary gid (containerd's fix for CVE-2023-25173: without
///   it the process would keep whatever groups the runtime had) plus, when no group was
///   given explicitly, every `/etc/group` entry that lists the user's name, as libcontainer's
///   `GetExecUser` does.
///
/// `runAsNonRoot` is checked first ([`check_run_as_non_root`]).
pub fn resolve_user(
    image_user: Option<&str>,
    s: &Security,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<User, SpecError> {
    check_run_as_non_root(image_user, s)?;
    let users: Vec<PasswdEntry> = passwd.map(parse_passwd).unwrap_or_default();
    let groups: Vec<GroupEntry> = group.map(parse_group).unwrap_or_default();

    let image_user = image_user.unwrap_or("");
    let (user_part, group_part) = image_user.split_once(':').unwrap_or((image_user, ""));

    let entry = match s.run_as_user {
        Some(uid) => Lookup::Numeric(uid, users.iter().find(|u| u.uid == uid)),
        None if user_part.is_empty() => Lookup::Numeric(0, users.iter().find(|u| u.uid == 0)),
        None => match user_part.parse::<u32>() {
            Ok(uid) => Lookup::Numeric(uid, users.iter().find(|u| u.uid == uid)),
            Err(_) => match users.iter().find(|u| u.name == user_part) {
                Some(e) => Lookup::Named(e),
                None => {
                    return Err(SpecError::UnknownUser {
                        image: String::new(),
                        user: user_part.to_owned(),
                        no_passwd: passwd.is_none(),
                    });
                }
            },
        },
    };
    let (uid, found) = match entry {
        Lookup::Numeric(uid, found) => (uid, found),
        Lookup::Named(e) => (e.uid, Some(e)),
    };

    let explicit_gid = match (s.run_as_group, s.run_as_user) {
        (Some(gid), _) => Some(gid),
        // runAsUser replaces the image's User, its group part included.
        (None, Some(_)) => None,
        (None, None) if group_part.is_empty() => None,
        (None, None) => Some(match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match groups.iter().find(|g| g.name == group_part) {
                Some(g) => g.gid,
                None => {
                    return Err(SpecError::UnknownGroup {
                        image: String::new(),
                        group: group_part.to_owned(),
                    });
                }
            },
        }),
    };
    let gid = explicit_gid.unwrap_or_else(|| found.map_or(0, |e| e.gid));

    let mut additional_gids = vec![gid];
    if let (None, Some(me)) = (explicit_gid, found) {
        for g in &groups {
            if g.members.contains(&me.name) && !additional_gids.contains(&g.gid) {
                additional_gids.push(g.gid);
            }
        }
    }
    let home = found
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_owned();
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

enum Lookup<'e, 'a> {
    Numeric(u32, Option<&'e PasswdEntry<'a>>),
    Named(&'e PasswdEntry<'a>),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// Lines that are blank, comments or malformed are skipped, as libcontainer's parser skips
/// them: one bad line in an image's passwd should not stop every other user resolving.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).copied().unwrap_or(""),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    records(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?,
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}
