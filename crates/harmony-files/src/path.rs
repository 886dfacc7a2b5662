//! File names from the network: strip the subscription prefix, then refuse anything that could
//! land outside the destination (absolute, `.`/`..`, NUL, oversized, the client's own suffix).

use crate::error::PathError;

/// Suffix of the client's partial files (`.NAME.harmony-part` beside the final name).
pub const PART_SUFFIX: &str = ".harmony-part";
/// Suffix of the client's own records in the destination.
pub const CACHE_SUFFIX: &str = ".harmony-cache";
/// The client's record of the digests of the files it holds, in the destination's root (see
/// `SyncEvent::Inventory`): a restarted client reads only the files changed since.
pub const DIGESTS_FILE: &str = ".digests.harmony-cache";
/// Longest accepted file name, in bytes (Linux `PATH_MAX`).
pub const MAX_NAME: usize = 4096;
/// Longest accepted path component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;

/// Whether virtual path `vpath` is under subscription `prefix` (component-wise: `/a` covers
/// `/a` and `/a/x`, not `/ab`).
pub fn under(vpath: &str, prefix: &str) -> bool {
    let Some(rest) = vpath.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
}

/// Joins a subscription path and a relative name into a virtual path.
pub fn join(prefix: &str, relative: &str) -> String {
    if prefix.ends_with('/') {
        format!("{prefix}{relative}")
    } else {
        format!("{prefix}/{relative}")
    }
}

/// The components of a name relative to the destination, checked.
pub fn relative(name: &str) -> Result<Vec<&str>, PathError> {
    if name.len() > MAX_NAME {
        return Err(PathError::TooLong {
            len: name.len(),
            max: MAX_NAME,
        });
    }
    if name.contains('\0') {
        return Err(PathError::Nul);
    }
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name.starts_with('/') {
        return Err(PathError::Absolute);
    }
    let parts: Vec<&str> = name.split('/').collect();
    for part in &parts {
        if part.is_empty() || *part == "." || *part == ".." {
            return Err(PathError::BadComponent((*part).to_string()));
        }
        if part.len() > MAX_COMPONENT {
            return Err(PathError::TooLong {
                len: part.len(),
                max: MAX_COMPONENT,
            });
        }
    }
    if name.ends_with(PART_SUFFIX) || name.ends_with(CACHE_SUFFIX) {
        return Err(PathError::Reserved);
    }
    Ok(parts)
}

/// The name of `vpath` relative to the first subscription that covers it, checked.
pub fn strip_subscription<'a>(
    vpath: &'a str,
    subscriptions: &[String],
) -> Result<&'a str, PathError> {
    if !vpath.starts_with('/') {
        return Err(PathError::NotSubscribed(vpath.to_string()));
    }
    let prefix = subscriptions
        .iter()
        .find(|p| under(vpath, p))
        .ok_or_else(|| PathError::NotSubscribed(vpath.to_string()))?;
    // The separator after the prefix, as zeromq/filemq's client drops it; a second one
    // would make the rest absolute.
    let rest = &vpath[prefix.len()..];
    let rest = if prefix.ends_with('/') {
        rest
    } else {
        rest.strip_prefix('/').unwrap_or(rest)
    };
    relative(rest)?;
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_components() {
        assert!(under("/a/b", "/"));
        assert!(under("/a/b", "/a"));
        assert!(under("/a/b", "/a/"));
        assert!(!under("/ab/c", "/a"));
        assert!(!under("/b", "/a"));
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x/y"), "/a/x/y");
    }

    #[test]
    fn good_names() {
        assert_eq!(relative("hello.txt"), Ok(vec!["hello.txt"]));
        assert_eq!(relative("docs/readme.txt"), Ok(vec!["docs", "readme.txt"]));
        assert_eq!(relative("..hidden"), Ok(vec!["..hidden"]));
        let subs = vec!["/photos".to_string()];
        assert_eq!(strip_subscription("/photos/a/b.jpg", &subs), Ok("a/b.jpg"));
    }

    #[test]
    fn hostile_names() {
        assert_eq!(relative("/etc/passwd"), Err(PathError::Absolute));
        let root = vec!["/".to_string()];
        assert_eq!(strip_subscription("/a/b", &root), Ok("a/b"));
        assert_eq!(
            strip_subscription("//etc/passwd", &root),
            Err(PathError::Absolute)
        );
        assert_eq!(
            strip_subscription("/photos//etc", &["/photos".to_string()]),
            Err(PathError::Absolute)
        );
        assert!(matches!(relative("../x"), Err(PathError::BadComponent(_))));
        assert!(matches!(
            relative("a/../../x"),
            Err(PathError::BadComponent(_))
        ));
        assert!(matches!(relative("a/./x"), Err(PathError::BadComponent(_))));
        assert!(matches!(relative("a//x"), Err(PathError::BadComponent(_))));
        assert!(matches!(relative("a/"), Err(PathError::BadComponent(_))));
        assert_eq!(relative("a\0b"), Err(PathError::Nul));
        assert_eq!(relative("/"), Err(PathError::Absolute));
        assert_eq!(relative(""), Err(PathError::Empty));
        assert!(matches!(
            relative(&"x".repeat(256)),
            Err(PathError::TooLong { .. })
        ));
        assert!(matches!(
            relative(&"x/".repeat(3000)),
            Err(PathError::TooLong { .. })
        ));
        assert_eq!(relative(".a.harmony-part"), Err(PathError::Reserved));
        assert_eq!(relative(".digests.harmony-cache"), Err(PathError::Reserved));
        assert_eq!(relative("d/x.harmony-cache"), Err(PathError::Reserved));
        let subs = vec!["/photos".to_string()];
        assert!(matches!(
            strip_subscription("/other/x", &subs),
            Err(PathError::NotSubscribed(_))
        ));
        assert!(matches!(
            strip_subscription("/photosx/y", &subs),
            Err(PathError::NotSubscribed(_))
        ));
        assert_eq!(strip_subscription("/photos", &subs), Err(PathError::Empty));
        assert!(matches!(
            strip_subscription("relative", &subs),
            Err(PathError::NotSubscribed(_))
        ));
    }
}
