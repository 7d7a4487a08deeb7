//! Which of a session's audiences a request URL lies under.
//!
//! A session attaches its token and proofs only to URLs under one of its
//! audiences: the same scheme, host and port (the scheme's default port when
//! none is given), no user information, and a path under the audience's path
//! at a segment boundary. URLs are compared parsed, never as strings, so that
//! `https://api.example` does not cover `https://api.example.evil.com`,
//! `https://api.example@evil.com` or `https://api.example:8443`.
//!
//! Paths are compared after normalisation: dot segments removed (the `url`
//! crate does this, `%2e` included), and then percent-encoded slashes,
//! backslashes and dots (`%2f`, `%5c`, `%2e`) decoded and backslashes taken
//! as slashes, with dot segments removed again. A server that decodes those
//! before routing must not be led out of a path-scoped audience by
//! `/travel/..%2fadmin`.

use crate::error::{Error, Result};

/// A URL reduced to what the comparison looks at.
struct Parsed {
    origin: url::Origin,
    /// The path's segments as the `url` crate normalised them.
    raw: Vec<String>,
    /// The same after decoding `%2e`, `%2f`, `%5c` and splitting on `\`.
    decoded: Vec<String>,
}

fn parse(input: &str) -> Option<Parsed> {
    let u = url::Url::parse(input).ok()?;
    if !u.has_host() || !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    let origin = u.origin();
    if !origin.is_tuple() {
        return None;
    }
    let raw = segments(u.path().split('/').map(str::to_owned));
    let decoded = segments(
        u.path()
            .split('/')
            .flat_map(|s| {
                decode_separators(s)
                    .split(['/', '\\'])
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>(),
    );
    Some(Parsed {
        origin,
        raw,
        decoded,
    })
}

/// Decode `%2e`, `%2f` and `%5c` (any case); other escapes stay as they are.
fn decode_separators(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        match esc.to_ascii_lowercase().as_str() {
            "%2e" => out.push('.'),
            "%2f" => out.push('/'),
            "%5c" => out.push('\\'),
            _ => {
                out.push('%');
                rest = &rest[i + 1..];
                continue;
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

/// Remove dot segments (RFC 3986 section 5.2.4) from a list of segments; the
/// leading empty segment of an absolute path and a trailing empty segment
/// (`/travel/`) are dropped, so that `/travel` and `/travel/` compare equal.
fn segments(parts: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        match p.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(p),
        }
    }
    out
}

/// Whether `url` lies under `audience` (see the module documentation).
pub(crate) fn covers(audience: &str, url: &str) -> bool {
    match (parse(audience), parse(url)) {
        (Some(a), Some(u)) => {
            a.origin == u.origin && u.raw.starts_with(&a.raw) && u.decoded.starts_with(&a.decoded)
        }
        _ => false,
    }
}

/// The audience `url` belongs to: the one with the longest path among those
/// that cover it. Anything else is an [`Error::InvalidRequest`] naming the
/// URL's origin (never its path or query, which may carry data) and the
/// audiences, raised before anything is sent.
pub(crate) fn pick<'a>(
    audiences: impl IntoIterator<Item = &'a String>,
    url: &str,
) -> Result<&'a String> {
    let audiences: Vec<&String> = audiences.into_iter().collect();
    let best = audiences
        .iter()
        .filter(|a| covers(a, url))
        .max_by_key(|a| parse(a).map_or(0, |p| p.raw.len()));
    if let Some(a) = best {
        return Ok(a);
    }
    let origin = match url::Url::parse(url) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            format!(
                "{} (with user information)",
                u.origin().ascii_serialization()
            )
        }
        Ok(u) if u.origin().is_tuple() => u.origin().ascii_serialization(),
        _ => "a URL that is not absolute http(s)".to_owned(),
    };
    let mut names: Vec<&str> = audiences.iter().map(|a| a.as_str()).collect();
    names.sort_unstable();
    Err(Error::InvalidRequest(format!(
        "refusing to send the session's token to {origin}: the URL is not under any of its audiences [{}] (same scheme, host and port, and a path under the audience's path); add the API with add_audience",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::{covers, pick};
    use crate::error::Error;

    #[test]
    fn an_origin_audience_covers_its_origin_only() {
        let aud = "https://api.example";
        for url in [
            "https://api.example",
            "https://api.example/",
            "https://api.example/flights?x=1",
            "https://api.example?x",
            "https://api.example#f",
            "https://API.example:443/flights",
            "https://api.example/a/../b",
        ] {
            assert!(covers(aud, url), "{url}");
        }
        for url in [
            "https://api.example.evil.com/flights",
            "https://api.example:8443/flights",
            "https://api.examplex/",
            "https://api.exampl",
            "http://api.example/flights",
            "https://evil.example/?https://api.example",
            "https://api.example@evil.com/",
            "https://api.example:443@evil.com/",
            "https://user:pw@api.example/flights",
            "https://evil.com\\@api.example/",
            "api.example/flights",
            "/flights",
            "",
        ] {
            assert!(!covers(aud, url), "{url}");
        }
        assert!(covers("http://api.example:80/", "http://api.example/x"));
    }

    #[test]
    fn a_path_audience_covers_its_path_at_segment_boundaries() {
        let aud = "https://api.example/travel";
        for url in [
            "https://api.example/travel",
            "https://api.example/travel/",
            "https://api.example/travel/x?y=../z",
            "https://api.example/travel/a/../b",
            "https://api.example/travel/%2e/b",
            "https://api.example/other/../travel/b",
        ] {
            assert!(covers(aud, url), "{url}");
        }
        for url in [
            "https://api.example/travelx",
            "https://api.example/",
            "https://api.example/travel/../admin",
            "https://api.example/travel/%2e%2e/admin",
            "https://api.example/travel/%2E%2E/admin",
            "https://api.example/travel/..%2fadmin",
            "https://api.example/travel/..%2Fadmin",
            "https://api.example/travel/..%5cadmin",
            "https://api.example/travel/..\\admin",
            "https://api.example/travel%2f..%2fadmin",
            "https://api.example/travel/x/..%2f..%2fadmin",
            "https://api.example/travel%2fx",
        ] {
            assert!(!covers(aud, url), "{url}");
        }
        assert!(covers(
            "https://api.example/travel/",
            "https://api.example/travel/x"
        ));
        assert!(covers(
            "https://api.example/travel/",
            "https://api.example/travel"
        ));
    }

    #[test]
    fn the_longest_audience_wins_and_others_are_refused_by_origin() {
        let auds = [
            "https://api.example".to_owned(),
            "https://api.example/bank".to_owned(),
        ];
        assert_eq!(pick(&auds, "https://api.example/bank/x").unwrap(), &auds[1]);
        assert_eq!(pick(&auds, "https://api.example/bankx").unwrap(), &auds[0]);
        let e = pick(&auds, "https://evil.example/steal?token=secret").unwrap_err();
        let Error::InvalidRequest(m) = &e else {
            panic!("{e:?}")
        };
        assert!(m.contains("https://evil.example"), "{m}");
        assert!(m.contains("https://api.example/bank"), "{m}");
        assert!(!m.contains("steal") && !m.contains("secret"), "{m}");
        let e = pick(&auds, "https://api.example@evil.com/").unwrap_err();
        assert!(e.to_string().contains("https://evil.com"), "{e}");
    }
}
