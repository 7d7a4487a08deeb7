//! The OAuth provider the gateway tests connect upstreams to: the stand-in
//! that the mail demo runs too (`examples/demo-kit/oauth_provider.rs`), so
//! that the demo's provider is the one these tests hold to the RFCs.

#[path = "../../../examples/demo-kit/oauth_provider.rs"]
mod shared;

pub use shared::{CLIENT_SECRET, Provider};

impl Provider {
    pub async fn start() -> Provider {
        Provider::bind().await.expect("the OAuth provider starts")
    }
}
