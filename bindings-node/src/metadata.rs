//! RFC 9728 protected-resource metadata: the core builds it; `lib/protocol.js`
//! parses the JSON and adds the Express handler.

use napi_derive::napi;
use protonpass_agent as core;

/// Options of `resourceMetadata`.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct ResourceMetadataOptions {
    /// The resource's URL (the audience of its tokens), e.g. `https://api.example/mcp`.
    pub resource: String,
    /// The broker's issuer URL.
    pub authorization_server: String,
    /// The scopes clients may ask for.
    pub scopes_supported: Option<Vec<String>>,
    /// Documentation for developers.
    pub resource_documentation: Option<String>,
}

/// The metadata document of a resource, as JSON text (`resourceMetadata`
/// returns it parsed).
#[napi]
pub fn resource_metadata_json(options: ResourceMetadataOptions) -> napi::Result<String> {
    let scopes = options.scopes_supported.unwrap_or_default();
    let m = core::ResourceMetadata::new(&options.resource, &options.authorization_server, &scopes)
        .map_err(|e| crate::error::to_napi(&e))?
        .with_documentation(options.resource_documentation.as_deref());
    Ok(m.to_json())
}

/// Where a resource's metadata is served: `/.well-known/oauth-protected-resource`
/// followed by the resource's path (RFC 9728 section 3.1).
#[napi]
pub fn resource_metadata_path(resource: String) -> napi::Result<String> {
    core::resource_metadata_path(&resource).map_err(|e| crate::error::to_napi(&e))
}

/// The absolute URL of a resource's metadata, as `401` challenges announce it
/// (pass it to `new Verifier({ resourceMetadataUrl })`).
#[napi]
pub fn resource_metadata_url(resource: String) -> napi::Result<String> {
    core::resource_metadata_url(&resource).map_err(|e| crate::error::to_napi(&e))
}
