//! Unit tests of the scope algebra: the grammar, the coverage table of
//! the specification (`spec/02-scopes.md`), negotiation, resource-server checks, and properties.

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn set(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn parses_valid_scopes() {
    let cases: &[(&str, &str, &str, Qualifier)] = &[
        ("calendar:read", "calendar", "read", Qualifier::None),
        (
            "repo:write:my-project",
            "repo",
            "write",
            Qualifier::Name("my-project".into()),
        ),
        ("repo:write:*", "repo", "write", Qualifier::Any),
        (
            "payment:execute:under-100",
            "payment",
            "execute",
            Qualifier::Limit {
                bound: dec("100"),
                text: "under-100".into(),
            },
        ),
        (
            "payment:execute:under-99.50",
            "payment",
            "execute",
            Qualifier::Limit {
                bound: dec("99.5"),
                text: "under-99.50".into(),
            },
        ),
        ("a0:b1:c2", "a0", "b1", Qualifier::Name("c2".into())),
        (
            "0day:x.y_z-w:v1.2",
            "0day",
            "x.y_z-w",
            Qualifier::Name("v1.2".into()),
        ),
        (
            "files:read:under",
            "files",
            "read",
            Qualifier::Name("under".into()),
        ),
        (
            "files:read:underdog",
            "files",
            "read",
            Qualifier::Name("underdog".into()),
        ),
    ];
    for (text, resource, action, qualifier) in cases {
        let s = scope(text);
        assert_eq!(s.resource(), *resource, "{text}");
        assert_eq!(s.action(), *action, "{text}");
        assert_eq!(s.qualifier(), qualifier, "{text}");
        // Display gives back what was written.
        assert_eq!(s.to_string(), *text);
        assert_eq!(text.parse::<Scope>().unwrap(), s);
    }
    let longest = format!("{}:b", "a".repeat(MAX_SCOPE_LEN - 2));
    scope(&longest);
}

#[test]
fn refuses_malformed_scopes() {
    let too_long = format!("{}:b", "a".repeat(MAX_SCOPE_LEN - 1));
    let bad = [
        "",
        " ",
        "*",
        "*:*",
        "calendar",
        "calendar:",
        ":read",
        "calendar::",
        "calendar::x",
        "calendar:read:",
        "a:b:c:d",
        "calendar:*",
        "*:read",
        // Upper case anywhere.
        "Calendar:read",
        "calendar:Read",
        "CALENDAR:READ",
        "repo:write:My-Project",
        "payment:execute:UNDER-100",
        "payment:execute:Under-100",
        // Limits that are not well formed; never read as names.
        "payment:execute:under-abc",
        "payment:execute:under-",
        "payment:execute:under--1",
        "payment:execute:under-+1",
        "payment:execute:under-1e3",
        "payment:execute:under-1.",
        "payment:execute:under-.5",
        "payment:execute:under-1.2.3",
        "payment:execute:under-1,000",
        "payment:execute:under-١٠٠",
        "payment:execute:under-100 ",
        // More digits than a decimal holds: rounding could widen the limit
        // (this one would round up to 2 and cover under-2).
        "payment:execute:under-1.99999999999999999999999999999",
        "payment:execute:under-123456789012345678901234567890",
        // Segments starting with punctuation.
        "-calendar:read",
        ".calendar:read",
        "_calendar:read",
        "calendar:-read",
        "repo:write:-x",
        // Homoglyphs and invisible characters.
        "cаlendar:read",        // Cyrillic a
        "calendar:reаd",        // Cyrillic a
        "calendar：read",       // full-width colon
        "calendar\u{2236}read", // ratio sign
        "calendar:read\u{200b}",
        "\u{feff}calendar:read",
        "calendar:read:my\u{2010}project", // Unicode hyphen
        "ｃalendar:read",
        "calendar:rеad", // Cyrillic e
        "ß:read",
        // Spaces, quotes, backslashes and other punctuation.
        "calendar :read",
        "calendar: read",
        " calendar:read",
        "calendar:read ",
        "calendar:read\t",
        "calendar:read\n",
        "\"calendar:read\"",
        "'calendar:read'",
        "calendar:read\"",
        "calendar:read\\",
        "calendar\\:read",
        "repo:write:my/project",
        "repo:write:..\\..",
        "repo:write:a*",
        "repo:write:**",
        "repo:write:%2a",
        "calendar:read;drop",
        "calendar:read\0",
        &too_long,
    ];
    for text in bad {
        let err = Scope::parse(text).expect_err(text);
        assert_eq!(err.code(), "invalid_scope", "{text:?}");
    }
}

#[test]
fn parses_scope_strings() {
    let s = set("calendar:read  repo:write:my-project calendar:read offline_access");
    let shown: Vec<String> = s.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["calendar:read", "repo:write:my-project"]);
    assert_eq!(s.to_string(), "calendar:read repo:write:my-project");
    assert_eq!(s.len(), 2);
    assert_eq!(ScopeSet::from_list(&["calendar:read"]).unwrap().len(), 1);

    for bad in [
        "",
        " ",
        "   ",
        "offline_access",
        "offline_access offline_access",
        "calendar:read\tcalendar:write",
        "calendar:read\ncalendar:write",
        "calendar:read\u{a0}calendar:write",
        "calendar:read bad",
        "calendar:read *",
        "Offline_access",
    ] {
        let err = ScopeSet::parse(bad).expect_err(bad);
        assert_eq!(err.code(), "invalid_scope", "{bad:?}");
    }
    let empty: [&str; 0] = [];
    assert_eq!(
        ScopeSet::from_list(&empty).unwrap_err().code(),
        "invalid_scope"
    );
    assert_eq!(
        ScopeSet::from_list(&["calendar:read", "calendar:read extra:x"])
            .unwrap_err()
            .code(),
        "invalid_scope"
    );

    let max: Vec<String> = (0..MAX_SCOPES).map(|i| format!("r{i}:read")).collect();
    assert_eq!(ScopeSet::from_list(&max).unwrap().len(), MAX_SCOPES);
    let over: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("r{i}:read")).collect();
    assert_eq!(
        ScopeSet::from_list(&over).unwrap_err().code(),
        "invalid_scope"
    );
    assert_eq!(
        ScopeSet::parse(&over.join(" ")).unwrap_err().code(),
        "invalid_scope"
    );
}

#[test]
fn coverage_table() {
    // (a, b, is a covered by b)
    let table = [
        ("calendar:read", "calendar:read", true),
        ("calendar:read", "calendar:write", false),
        ("calendar:write", "calendar:read", false),
        ("repo:read", "repo:write", false),
        ("repo:read:my-project", "repo:write", false),
        ("calendar:read", "calendars:read", false),
        ("calendar:read", "calendar:read:x", false),
        // No qualifier or `*` covers every qualifier of the same action.
        ("repo:write:my-project", "repo:write", true),
        ("repo:write:my-project", "repo:write:*", true),
        ("repo:write:*", "repo:write", true),
        ("repo:write", "repo:write:*", true),
        ("repo:write:*", "repo:write:*", true),
        ("payment:execute:under-100", "payment:execute", true),
        ("payment:execute:under-100", "payment:execute:*", true),
        // A name covers only itself.
        ("repo:write:my-project", "repo:write:my-project", true),
        ("repo:write:my-project", "repo:write:other", false),
        ("repo:write", "repo:write:my-project", false),
        ("repo:write:*", "repo:write:my-project", false),
        // The prefix trick: names are compared whole.
        ("repo:write:my-project-evil", "repo:write:my-project", false),
        ("repo:write:my-project", "repo:write:my-project-evil", false),
        ("repo:write:my-project", "repo:write:my", false),
        ("repo:write:my-project.git", "repo:write:my-project", false),
        // Limits: a's bound at most b's.
        (
            "payment:execute:under-50",
            "payment:execute:under-100",
            true,
        ),
        (
            "payment:execute:under-100",
            "payment:execute:under-100",
            true,
        ),
        (
            "payment:execute:under-100",
            "payment:execute:under-100.00",
            true,
        ),
        (
            "payment:execute:under-100.5",
            "payment:execute:under-100",
            false,
        ),
        (
            "payment:execute:under-100",
            "payment:execute:under-50",
            false,
        ),
        ("payment:execute:under-0", "payment:execute:under-1", true),
        // No limit is covered by a limit, no name by a limit and the other way.
        ("payment:execute", "payment:execute:under-100", false),
        ("payment:execute:*", "payment:execute:under-100", false),
        ("payment:execute:card", "payment:execute:under-100", false),
        ("payment:execute:under-100", "payment:execute:card", false),
        (
            "payment:execute:under-100",
            "payment:refund:under-100",
            false,
        ),
    ];
    for (a, b, expected) in table {
        assert_eq!(
            scope(a).is_covered_by(&scope(b)),
            expected,
            "{a} covered by {b}"
        );
        assert_eq!(set(b).covers(&scope(a)), expected, "{b} covers {a}");
    }
    let granted = set("repo:write:my-project calendar:read");
    assert!(granted.covers_all(&set("calendar:read repo:write:my-project")));
    assert!(!granted.covers_all(&set("calendar:read repo:write:my-project-evil")));
    assert_eq!(
        granted
            .missing(&set("calendar:read calendar:write repo:write"))
            .to_string(),
        "calendar:write repo:write"
    );
}

#[test]
fn negotiation_keeps_covered_narrows_limits_and_drops_the_rest() {
    let grant = set("payment:execute:under-100 calendar:read repo:write:my-project");
    let cases = [
        ("calendar:read", "calendar:read"),
        ("payment:execute:under-50", "payment:execute:under-50"),
        ("payment:execute:under-100", "payment:execute:under-100"),
        // Narrowed to the granted limit.
        ("payment:execute:under-500", "payment:execute:under-100"),
        ("payment:execute:under-100.01", "payment:execute:under-100"),
        // Not a limit: dropped, never widened or guessed.
        ("payment:execute", ""),
        ("payment:execute:*", ""),
        ("payment:execute:card", ""),
        ("repo:write", ""),
        ("repo:write:*", ""),
        ("repo:write:my-project-evil", ""),
        ("repo:read:my-project", ""),
        ("calendar:write", ""),
        (
            "calendar:read calendar:write repo:write:my-project",
            "calendar:read repo:write:my-project",
        ),
        (
            "payment:execute:under-500 payment:execute:under-20",
            "payment:execute:under-100 payment:execute:under-20",
        ),
        // Narrowing two requests to the same grant keeps one.
        (
            "payment:execute:under-500 payment:execute:under-600",
            "payment:execute:under-100",
        ),
    ];
    for (requested, expected) in cases {
        let got = grant.negotiate(&set(requested));
        assert_eq!(got.to_string(), expected, "requested {requested}");
        assert!(grant.covers_all(&got), "{requested}");
    }

    // Among several granted limits, the largest one below the request wins.
    let limits = set("payment:execute:under-20 payment:execute:under-100 payment:execute:under-60");
    assert_eq!(
        limits
            .negotiate(&set("payment:execute:under-500"))
            .to_string(),
        "payment:execute:under-100"
    );
    // An unlimited grant keeps the requested limit as it is.
    let unlimited = set("payment:execute:under-100 payment:execute");
    assert_eq!(
        unlimited
            .negotiate(&set("payment:execute:under-500"))
            .to_string(),
        "payment:execute:under-500"
    );
    // Nothing left: empty (the broker answers invalid_scope).
    assert!(grant.negotiate(&set("admin:all")).is_empty());
}

#[test]
fn require_and_amounts() {
    let held = set("calendar:read payment:execute:under-100 repo:write:my-project");
    held.require("calendar:read").unwrap();
    held.require("repo:write:my-project").unwrap();
    held.require("payment:execute:under-100").unwrap();
    held.require("payment:execute:under-80").unwrap();
    for needed in [
        "calendar:write",
        "repo:write",
        "repo:write:my-project-evil",
        "payment:execute",
        "payment:execute:under-101",
    ] {
        let err = held.require(needed).unwrap_err();
        assert_eq!(err.code(), "insufficient_scope", "{needed}");
        assert!(err.to_string().contains(needed), "{err}");
    }
    assert_eq!(
        held.require("Calendar:read").unwrap_err().code(),
        "invalid_scope"
    );

    // payment:execute under 100: 80 is fine, 100 is not (strictly less).
    for (amount, ok) in [
        ("0", true),
        ("80", true),
        ("99.99", true),
        ("99.999999", true),
        ("100", false),
        ("100.00", false),
        ("100.01", false),
        ("1000000", false),
        ("-1", false),
        ("-0.01", false),
    ] {
        assert_eq!(
            held.allows_amount("payment:execute", dec(amount)),
            ok,
            "{amount}"
        );
        assert_eq!(
            held.require_amount("payment:execute", dec(amount)).is_ok(),
            ok,
            "{amount}"
        );
    }
    assert_eq!(
        held.require_amount("payment:execute", dec("100"))
            .unwrap_err()
            .code(),
        "insufficient_scope"
    );
    // Other actions, qualified or malformed questions: refused.
    assert!(!held.allows_amount("payment:refund", dec("1")));
    assert!(!held.allows_amount("payment:execute:under-100", dec("1")));
    assert!(!held.allows_amount("payment", dec("1")));
    assert!(!held.allows_amount("Payment:execute", dec("1")));
    assert!(!held.allows_amount("repo:write", dec("1")));
    // No qualifier or `*`: any amount; a name: none.
    assert!(set("payment:execute").allows_amount("payment:execute", dec("1e9")));
    assert!(set("payment:execute:*").allows_amount("payment:execute", dec("1e9")));
    assert!(!set("payment:execute:card").allows_amount("payment:execute", dec("1")));
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    let resource = prop::sample::select(vec!["repo", "payment", "calendar"]);
    let action = prop::sample::select(vec!["read", "write", "execute"]);
    let qualifier = prop_oneof![
        Just(String::new()),
        Just(":*".to_owned()),
        prop::sample::select(vec![":a", ":b", ":my-project", ":my-project-evil"])
            .prop_map(str::to_owned),
        (0u32..300, prop::option::of(0u32..100)).prop_map(|(n, f)| match f {
            Some(f) => format!(":under-{n}.{f}"),
            None => format!(":under-{n}"),
        }),
    ];
    (resource, action, qualifier)
        .prop_map(|(r, a, q)| Scope::parse(&format!("{r}:{a}{q}")).unwrap())
}

fn arb_set() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec(arb_scope(), 1..8).prop_map(|v| {
        let mut s = ScopeSet::default();
        for x in v {
            s.insert(x);
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn coverage_is_reflexive(a in arb_scope()) {
        prop_assert!(a.is_covered_by(&a));
    }

    #[test]
    fn coverage_is_transitive(a in arb_scope(), b in arb_scope(), c in arb_scope()) {
        if a.is_covered_by(&b) && b.is_covered_by(&c) {
            prop_assert!(a.is_covered_by(&c), "{} <= {} <= {}", a, b, c);
        }
    }

    #[test]
    fn negotiation_never_widens(grant in arb_set(), requested in arb_set()) {
        let got = grant.negotiate(&requested);
        for s in &got {
            prop_assert!(grant.covers(s), "{} not covered by grant {}", s, grant);
            prop_assert!(requested.covers(s), "{} not covered by request {}", s, requested);
        }
        // Whatever the grant covers is kept as requested.
        for r in &requested {
            if grant.covers(r) {
                prop_assert!(got.iter().any(|g| g == r), "{} dropped", r);
            }
        }
        // Negotiating again changes nothing.
        prop_assert_eq!(grant.negotiate(&got), got.clone());
    }

    #[test]
    fn display_round_trips(s in arb_set()) {
        prop_assert_eq!(ScopeSet::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn parse_never_panics(text in "\\PC{0,40}") {
        let _ = ScopeSet::parse(&text);
    }
}
