//! Strict base64url (RFC 7515 section 2): no padding, no `+` or `/`, no white
//! space, and zero trailing bits, so that every value has exactly one encoding.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Encode without padding.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    STRICT.encode(bytes)
}

/// Decode canonical unpadded base64url; `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    STRICT.decode(text).ok()
}

/// Decode into exactly `N` bytes.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    decode(text)?.try_into().ok()
}
