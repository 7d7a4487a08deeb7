//! The request path as the gateway matches and forwards it. One normal form,
//! so that what the rules see is exactly what the upstream receives: repeated
//! slashes collapsed, `.` and `..` segments resolved, percent-encoded
//! unreserved characters decoded and the other escapes upper-cased. What
//! could be read two ways by the upstream (an encoded `.`, `/` or `\`, a
//! backslash, NUL or control characters, a `..` above the root) is refused.

/// Longest path accepted, bytes.
pub const MAX_PATH: usize = 4096;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

/// RFC 3986 `pchar` (without the `%` of an escape): unreserved, sub-delims, ':' and '@'.
pub fn is_pchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&c)
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~".contains(&c)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// One segment in normal form.
fn segment(s: &str) -> Result<String, BadPath> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadPath("a '%' not followed by two hex digits"));
            };
            let d = h * 16 + l;
            match d {
                b'.' => return Err(BadPath("an encoded '.' (%2E)")),
                b'/' => return Err(BadPath("an encoded '/' (%2F)")),
                b'\\' => return Err(BadPath("an encoded '\\' (%5C)")),
                0..=0x1f | 0x7f => return Err(BadPath("an encoded control character")),
                _ if unreserved(d) => out.push(d as char),
                _ => {
                    out.push('%');
                    out.push(b[i + 1].to_ascii_uppercase() as char);
                    out.push(b[i + 2].to_ascii_uppercase() as char);
                }
            }
            i += 3;
            continue;
        }
        if c == b'\\' {
            return Err(BadPath("a backslash"));
        }
        if !is_pchar(c) {
            return Err(BadPath("a character that is not allowed in a path"));
        }
        out.push(c as char);
        i += 1;
    }
    Ok(out)
}

/// Normalise `raw` (the path after the gateway prefix, with its leading '/';
/// empty means the root). The result starts with '/', has no empty, `.` or
/// `..` segment, and keeps a trailing '/' when `raw` had one.
pub fn normalise(raw: &str) -> Result<String, BadPath> {
    if raw.len() > MAX_PATH {
        return Err(BadPath("the path is too long"));
    }
    if raw.is_empty() {
        return Ok("/".into());
    }
    if !raw.starts_with('/') {
        return Err(BadPath("the path does not start with '/'"));
    }
    let mut out: Vec<String> = Vec::new();
    let mut trailing = false;
    for s in raw[1..].split('/') {
        trailing = false;
        match s {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                if out.pop().is_none() {
                    return Err(BadPath("'..' above the root"));
                }
                trailing = true;
            }
            _ => {
                let seg = segment(s)?;
                // An escape that decodes to a dot segment is refused above, so a
                // decoded segment is never "." or "..".
                out.push(seg);
            }
        }
    }
    let mut path = String::with_capacity(raw.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalise(raw).unwrap_or_else(|e| panic!("{raw:?}: {e:?}"))
    }

    #[test]
    fn normal_forms() {
        assert_eq!(ok(""), "/");
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/repos/me/proj"), "/repos/me/proj");
        assert_eq!(ok("//repos///me/proj"), "/repos/me/proj");
        assert_eq!(ok("/repos/me/proj/"), "/repos/me/proj/");
        assert_eq!(ok("/repos/./me/proj"), "/repos/me/proj");
        assert_eq!(ok("/repos/x/../me/proj"), "/repos/me/proj");
        assert_eq!(ok("/repos/me/proj/.."), "/repos/me/");
        assert_eq!(ok("/a/%7euser/%41b"), "/a/~user/Ab");
        assert_eq!(ok("/a/b%3ac%20d"), "/a/b%3Ac%20d");
        assert_eq!(ok("/a/v1:run@x"), "/a/v1:run@x");
    }

    #[test]
    fn traversal_is_resolved_before_matching_never_above_the_root() {
        // What is matched is what is forwarded: /proj/../proj-evil is
        // /proj-evil, and a rule for /proj does not see /proj.
        assert_eq!(ok("/repos/me/proj/../proj-evil"), "/repos/me/proj-evil");
        for raw in ["/..", "/../etc/passwd", "/a/../../b", "/./../x"] {
            assert_eq!(normalise(raw), Err(BadPath("'..' above the root")), "{raw}");
        }
    }

    #[test]
    fn ambiguous_or_unsafe_paths_are_refused() {
        for raw in [
            "/a/%2e%2e/b",
            "/a/%2E/b",
            "/a/.%2e/b",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\..\\b",
            "/a/%00",
            "/a/%0d%0aHost:%20x",
            "/a/%",
            "/a/%g1",
            "/a/%2",
            "/a b",
            "/a\"b",
            "/a<b>",
            "/a\u{0}b",
            "/a\rb",
            "/a\nb",
            "/a/é",
            "relative",
            "/a?b",
            "/a#b",
        ] {
            assert!(normalise(raw).is_err(), "{raw:?} was accepted");
        }
        assert!(normalise(&format!("/{}", "a".repeat(MAX_PATH))).is_err());
    }

    #[test]
    fn normal_form_is_a_fixed_point() {
        for raw in ["/a//b/./c/../d/", "/%7e/%3a", "/x/y:z@w/", "/"] {
            let once = ok(raw);
            assert_eq!(ok(&once), once, "{raw}");
        }
    }
}
