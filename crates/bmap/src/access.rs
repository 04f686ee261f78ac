//! Who may open a device node, for the message a user sees when opening one is not
//! permitted: the node's owner, group and mode, and what to do (run as root, or join
//! the group that owns the device).

use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// What a device node allows, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The owning user's id.
    pub uid: u32,
    /// The owning group's name (its number when the system has no name for it).
    pub group: String,
    /// The permission bits (`0o660`).
    pub mode: u32,
    /// Whether writing (else reading) was refused.
    pub write: bool,
}

impl Access {
    /// What `meta` (a device node's metadata) allows; `write` is what was attempted.
    pub fn of(meta: &Metadata, write: bool) -> Access {
        let gid = meta.gid();
        Access {
            uid: meta.uid(),
            group: crate::sys::group_name(gid).unwrap_or_else(|| gid.to_string()),
            mode: meta.permissions().mode() & 0o7777,
            write,
        }
    }

    /// Whether members of the owning group may do what was attempted.
    pub fn group_may(&self) -> bool {
        let bit = if self.write { 0o020 } else { 0o040 };
        self.mode & bit != 0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.write { "write" } else { "read" };
        if self.group_may() {
            write!(
                f,
                "it belongs to group '{}' (mode {:04o}); run bmaptool as root (sudo), or add \
                 your user to the group '{}' (then log in again)",
                self.group, self.mode, self.group
            )
        } else {
            write!(
                f,
                "only its owner (uid {}) may {verb} it (group '{}', mode {:04o}); run bmaptool \
                 as root (sudo)",
                self.uid, self.group, self.mode
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(mode: u32, write: bool) -> Access {
        Access {
            uid: 0,
            group: "disk".into(),
            mode,
            write,
        }
    }

    #[test]
    fn a_group_that_may_write_is_named_as_the_way_in() {
        let text = access(0o660, true).to_string();
        assert!(text.contains("root"), "{text}");
        assert!(text.contains("add your user to the group 'disk'"), "{text}");
    }

    #[test]
    fn a_group_that_may_only_read_is_no_way_to_write() {
        let text = access(0o640, true).to_string();
        assert!(!text.contains("add your user"), "{text}");
        assert!(
            text.contains("group 'disk'") && text.contains("0640"),
            "{text}"
        );
        assert!(access(0o640, false).group_may());
    }
}
