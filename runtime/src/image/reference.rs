//! Image names: `namespace/name:tag`, with `latest` as the default tag.
//!
//! A registry host in front (`docker.io/library/alpine:3.19`, `localhost:5000/x/y`) is
//! dropped, since hull has no registry; a bare name gets the `library` namespace, as on
//! Docker Hub. Nested namespaces (`a/b/c:tag`) are kept whole.

use std::fmt;

use super::ImageError;

/// The namespace given to a bare name (`alpine` is `library/alpine:latest`).
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag given to a name without one.
pub const DEFAULT_TAG: &str = "latest";

/// A normalized image name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `library`, `hull`, or a nested path like `team/project`.
    pub namespace: String,
    /// The repository name.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// Whether the input named a namespace (else `namespace` is the default).
    pub explicit_namespace: bool,
}

impl Reference {
    /// Parses and normalizes a reference.
    pub fn parse(input: &str) -> Result<Reference, ImageError> {
        let bad = |reason: &str| ImageError::InvalidReference {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("empty"));
        }
        if input.len() > 255 {
            return Err(bad("longer than 255 characters"));
        }
        if input.contains('@') {
            return Err(bad(
                "digest references are not supported; use the image id instead",
            ));
        }
        // The tag is after the last ':' that follows the last '/' (a ':' before it is a
        // registry port).
        let last_slash = input.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match input[last_slash..].rfind(':') {
            Some(i) => (&input[..last_slash + i], &input[last_slash + i + 1..]),
            None => (input, DEFAULT_TAG),
        };
        validate_tag(tag).map_err(|r| bad(&r))?;

        let mut parts: Vec<&str> = path.split('/').collect();
        if parts.len() > 1 {
            let first = parts[0];
            let hostlike = first.starts_with(|c: char| c.is_ascii_alphanumeric())
                && first
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
            if hostlike && (first.contains('.') || first.contains(':') || first == "localhost") {
                parts.remove(0);
            }
        }
        for part in &parts {
            validate_component(part).map_err(|r| bad(&r))?;
        }
        let name = parts.pop().ok_or_else(|| bad("no name"))?.to_string();
        let explicit_namespace = !parts.is_empty();
        let namespace = if explicit_namespace {
            parts.join("/")
        } else {
            DEFAULT_NAMESPACE.to_string()
        };
        Ok(Reference {
            namespace,
            name,
            tag: tag.to_string(),
            explicit_namespace,
        })
    }

    /// `name:tag` without the namespace, used to match short references.
    pub fn short(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.name, self.tag)
    }
}

fn validate_component(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("empty path component".into());
    }
    if part.len() > 128 {
        return Err(format!("component {part:?} is longer than 128 characters"));
    }
    let bytes = part.as_bytes();
    let ok_char = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-');
    if !bytes.iter().all(ok_char) {
        return Err(format!(
            "component {part:?} may only contain lowercase letters, digits, '.', '_' and '-'"
        ));
    }
    if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return Err(format!(
            "component {part:?} must start and end with a letter or digit"
        ));
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.len() > 128 {
        return Err("tag must be 1 to 128 characters".into());
    }
    let bytes = tag.as_bytes();
    let ok_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if !bytes.iter().all(ok_char) || bytes[0] == b'.' || bytes[0] == b'-' {
        return Err(format!(
            "tag {tag:?} may only contain letters, digits, '.', '_' and '-' (not first)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(norm("busybox"), "library/busybox:latest");
        assert_eq!(norm("hull/busybox"), "hull/busybox:latest");
        assert_eq!(norm("hull/busybox:1.35"), "hull/busybox:1.35");
        assert_eq!(norm("docker.io/library/alpine:3.19"), "library/alpine:3.19");
        assert_eq!(norm("localhost:5000/team/app:v1"), "team/app:v1");
        assert_eq!(norm("localhost/app"), "library/app:latest");
        assert_eq!(norm("a/b/c:t"), "a/b/c:t");
        assert!(!Reference::parse("busybox").unwrap().explicit_namespace);
        assert!(Reference::parse("x/busybox").unwrap().explicit_namespace);
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "../x",
            "x/..",
            "a:",
            "a:-x",
            "a@sha256:00",
            "-a",
            "a b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
