//! The wire formats the broker parses, as pure functions with no I/O: the
//! token endpoint's request ([`token_request`]), strict form parameters
//! ([`params`]), stateless DPoP nonces ([`nonce`]), RFC 7591 client metadata
//! ([`client_metadata`]) and RFC 9396 authorization details
//! ([`authz_details`]). Both the HTTP layer and the service layer use them;
//! the parsers that take untrusted input have fuzz targets in `fuzz/`.

/// Longest grant, and longest access token, in seconds (30 days).
pub const MAX_TTL: i64 = 30 * 24 * 3600;

pub mod authz_details;
pub mod client_metadata;
pub(crate) mod nonce;
pub(crate) mod params;
pub mod token_request;
