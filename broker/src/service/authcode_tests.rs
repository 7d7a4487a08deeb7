use super::*;

#[test]
fn s256_is_unpadded_base64url_of_sha256() {
    // Computed independently (Python hashlib + base64.urlsafe_b64encode).
    assert_eq!(
        s256("dBjftJeZ4CVP-mJ0kzyAyqhVf7ZJ2t6kBAaVw5Uq0Fg"),
        "Ujl0zI9DBuXW8emJ97sVeFRCsGDIB6q4WT0MMc1RwNo"
    );
    assert!(valid_challenge(
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGKSsw9o_M"
    ));
    assert!(!valid_challenge(
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGKSsw9o_"
    ));
    assert!(!valid_challenge(
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGKSsw9o+M"
    ));
}

#[test]
fn responses_go_to_the_redirect_uri_with_iss_and_state() {
    let l = with_query(
        "https://a.example/cb?x=1",
        &[("code", "c"), ("state", "a b&")],
    );
    assert_eq!(l, "https://a.example/cb?x=1&code=c&state=a+b%26");
    let l = error_location(
        "http://127.0.0.1:9/cb",
        None,
        "https://broker",
        "access_denied",
        "the owner denied the request",
    );
    assert!(
        l.starts_with("http://127.0.0.1:9/cb?error=access_denied&"),
        "{l}"
    );
    assert!(l.ends_with("&iss=https%3A%2F%2Fbroker"), "{l}");
}
