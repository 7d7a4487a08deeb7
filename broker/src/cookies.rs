//! The `Cookie` request header, read: the dashboard's session and sign-in
//! cookies, and the browser binding of a gateway OAuth connection.

use axum::http::{HeaderMap, header};

/// Every `(name, value)` pair of the request's `Cookie` headers, in order.
pub(crate) fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
}
