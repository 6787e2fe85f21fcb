//! Image references in docker's grammar: `[DOMAIN/]PATH[:TAG][@DIGEST]`.
//!
//! The first `/`-separated component is a registry domain when it contains `.` or `:`,
//! is `localhost`, or has an upper-case letter (docker's rule); otherwise the domain is
//! `docker.io`, where a one-component path gets the `library/` namespace
//! (`alpine` is `docker.io/library/alpine:latest`). `index.docker.io` is `docker.io`.
//!
//! Stored names (the image index, `hull image ls`) omit the `docker.io/` domain, so an
//! image imported before hull knew about registries (`library/alpine:3.19`,
//! `hull/busybox:latest`) keeps its name and still means the same thing; names of any
//! other registry keep their domain (`localhost:5000/team/app:v1`, `localhost/pm-test:1`).

use std::fmt;

use super::ImageError;

/// The registry of references without a domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The namespace given to a one-component path on docker.io.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag given to a name without tag or digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest name (domain and path), as docker.
const MAX_NAME: usize = 255;

/// A normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port: `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub domain: String,
    /// `library`, `hull`, or a nested path like `team/project` (may be empty for a
    /// one-component path on a registry other than docker.io).
    pub namespace: String,
    /// The last path component.
    pub name: String,
    /// The tag; empty when the reference has a digest and no tag.
    pub tag: String,
    /// `sha256:<hex>` when the reference pins a manifest digest.
    pub digest: Option<String>,
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
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                super::Sha256Digest::parse(digest).map_err(|_| {
                    bad("the digest after '@' must be sha256:<64 lowercase hex digits>")
                })?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/' (a ':' before it is a
        // registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                validate_tag(tag).map_err(|r| bad(&r))?;
                (&rest[..last_slash + i], tag.to_string())
            }
            None if digest.is_some() => (rest, String::new()),
            None => (rest, DEFAULT_TAG.to_string()),
        };

        let (domain, path) = match name.split_once('/') {
            Some((first, path)) if is_domain_like(first) => {
                validate_domain(first).map_err(|r| bad(&r))?;
                (first.to_string(), path)
            }
            _ => (DEFAULT_DOMAIN.to_string(), name),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        let mut parts: Vec<&str> = path.split('/').collect();
        for part in &parts {
            validate_component(part).map_err(|r| bad(&r))?;
        }
        let name = parts.pop().ok_or_else(|| bad("no name"))?.to_string();
        let explicit_namespace = !parts.is_empty();
        let namespace = if explicit_namespace {
            parts.join("/")
        } else if domain == DEFAULT_DOMAIN {
            DEFAULT_NAMESPACE.to_string()
        } else {
            String::new()
        };
        // Counted on the full name, as docker counts it after normalizing: a short name
        // whose `docker.io/library/` form is too long is refused, not stored under a
        // name that no longer parses (found by the image_reference fuzz target).
        let full_len =
            domain.len() + 1 + namespace.len() + usize::from(!namespace.is_empty()) + name.len();
        if full_len > MAX_NAME {
            return Err(bad(&format!(
                "name longer than {MAX_NAME} characters (with its registry and namespace: {full_len})"
            )));
        }
        Ok(Reference {
            domain,
            namespace,
            name,
            tag,
            digest,
            explicit_namespace,
        })
    }

    /// The repository path on its registry: `library/alpine`, `team/app`.
    pub fn repository(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// The full name with the domain always spelled out:
    /// `docker.io/library/alpine:latest`.
    pub fn full(&self) -> String {
        format!("{}/{}{}", self.domain, self.repository(), self.suffix())
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest.as_deref().unwrap_or(&self.tag)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: tag.to_string(),
            digest: None,
            ..self.clone()
        }
    }

    /// `name:tag` without domain and namespace, used to match short references.
    pub fn short(&self) -> String {
        format!("{}{}", self.name, self.suffix())
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if !self.tag.is_empty() {
            s.push(':');
            s.push_str(&self.tag);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// The stored form: the domain is left out for docker.io (see the module docs), unless
/// the path's first component would then read as a registry (`docker.io/libr.ry/x` must
/// not be stored as `libr.ry/x`, another registry's image; found by fuzzing).
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let repository = self.repository();
        let first = repository.split('/').next().unwrap_or_default();
        if self.domain == DEFAULT_DOMAIN && !is_domain_like(first) {
            write!(f, "{}{}", repository, self.suffix())
        } else {
            write!(f, "{}", self.full())
        }
    }
}

/// docker's test for "the first component is a registry, not a namespace".
fn is_domain_like(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

/// `host[:port]`, host a DNS name, an IPv4 address or a bracketed IPv6 address.
fn validate_domain(domain: &str) -> Result<(), String> {
    let bad = || format!("registry {domain:?} is not HOST[:PORT]");
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (domain, None),
            p => (domain, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || port.parse::<u16>().is_err() {
            return Err(bad());
        }
    }
    if host.starts_with('[') {
        return Ok(());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// A path component: lowercase alphanumeric runs joined by one `.`, one `_`, `__` or
/// any number of `-` (docker's grammar).
fn validate_component(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("empty path component".into());
    }
    let bad = || {
        format!(
            "component {part:?} must be lowercase letters and digits, separated by '.', '_', \
             '__' or dashes"
        )
    };
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(bad());
        }
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

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().full()
    }

    #[test]
    fn normalizes_names_keeping_the_registry() {
        assert_eq!(norm("busybox"), "library/busybox:latest");
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("hull/busybox"), "hull/busybox:latest");
        assert_eq!(norm("hull/busybox:1.35"), "hull/busybox:1.35");
        assert_eq!(norm("docker.io/library/alpine:3.19"), "library/alpine:3.19");
        assert_eq!(norm("index.docker.io/alpine"), "library/alpine:latest");
        assert_eq!(norm("docker.io/alpine"), "library/alpine:latest");
        assert_eq!(
            norm("localhost:5000/team/app:v1"),
            "localhost:5000/team/app:v1"
        );
        assert_eq!(norm("localhost/pm-test:1"), "localhost/pm-test:1");
        assert_eq!(norm("quay.io/a/b/c:t"), "quay.io/a/b/c:t");
        assert_eq!(norm("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        assert_eq!(norm("[::1]:5000/x:1"), "[::1]:5000/x:1");
        assert_eq!(norm("a/b/c:t"), "a/b/c:t");
        assert_eq!(norm("a__b/c-----d/e.f_g"), "a__b/c-----d/e.f_g:latest");
        let r = Reference::parse("localhost:5000/team/app:v1").unwrap();
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(Reference::parse("localhost/x").unwrap().repository(), "x");
        assert!(!Reference::parse("busybox").unwrap().explicit_namespace);
        assert!(Reference::parse("x/busybox").unwrap().explicit_namespace);
    }

    #[test]
    fn stored_names_read_back_as_themselves() {
        for s in [
            "library/alpine:3.19",
            "hull/busybox:latest",
            "localhost:5000/team/app:v1",
            "localhost/pm-test:1",
        ] {
            assert_eq!(norm(s), s);
            assert_eq!(norm(&norm(s)), norm(s));
        }
    }

    #[test]
    fn docker_io_namespaces_that_look_like_registries_keep_the_domain() {
        // Shortened, these would name an image on another registry.
        for (input, stored) in [
            (
                "index.docker.io/libr.ry/alpine",
                "docker.io/libr.ry/alpine:latest",
            ),
            ("docker.io/localhost/x:1", "docker.io/localhost/x:1"),
        ] {
            assert_eq!(norm(input), stored);
            let again = Reference::parse(stored).unwrap();
            assert_eq!(again.domain, DEFAULT_DOMAIN);
            assert_eq!(again, Reference::parse(input).unwrap());
        }
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!(r.tag, "");
        assert_eq!(r.tag_or_digest(), d);
        assert_eq!(r.to_string(), format!("library/alpine@{d}"));
        let r = Reference::parse(&format!("localhost:5000/a:1@{d}")).unwrap();
        assert_eq!(r.tag, "1");
        assert_eq!(r.full(), format!("localhost:5000/a:1@{d}"));
        assert_eq!(r.with_tag("2").full(), "localhost:5000/a:2");
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
            "a@md5:00",
            "-a",
            "a b",
            "a..b",
            "a._b",
            "a/b_",
            "host:99999/x",
            "ho_st.io/x",
            "[zz]:5000/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Reference::parse(&format!("a/{}", "b".repeat(255))).is_err());
    }

    /// The limit is docker's: on the full name. A 246-character name was accepted while its
    /// full form, `docker.io/library/NAME:latest` (264), was refused by the same parser.
    #[test]
    fn the_name_limit_counts_the_registry_and_namespace() {
        let e = Reference::parse(&"a".repeat(246)).unwrap_err().to_string();
        assert!(e.contains("longer than 255") && e.contains("264"), "{e}");
        let longest = "a".repeat(255 - "docker.io/library/".len());
        let r = Reference::parse(&longest).unwrap();
        assert_eq!(Reference::parse(&r.full()).unwrap().name, longest);
        assert!(Reference::parse(&format!("{longest}b")).is_err());
    }
}
