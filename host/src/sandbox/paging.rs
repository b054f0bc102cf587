//! Lists as kube-apiserver pages and trims them: `limit` with the
//! `continue` token it answers, and the metadata-only list a client asks
//! for with `Accept: …;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`
//! (kube-rs's `list_metadata`, kubectl). A sweep over 100,000 objects then
//! holds one page of their metadata at a time, on both sides.
//!
//! Unlike kube-apiserver, later pages are read from the store as it is now,
//! not from a snapshot at the first page's resourceVersion. Every page
//! reports that first resourceVersion, though, so a client that watches
//! from it (a reflector) is replayed whatever changed between pages; once
//! those events are no longer kept the token is `410 Expired`, as a
//! compacted one is.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::store::{ApiError, Kind, Position, Store};

/// What a list request asks for besides the objects' kind and selector.
pub struct ListRequest {
    /// At most this many objects (`limit`; none or 0: all).
    limit: usize,
    /// Where the previous page ended (`continue`).
    from: Option<Continue>,
    /// Only each object's metadata (`as=PartialObjectMetadataList`).
    metadata_only: bool,
}

/// The `continue` token's content: the first page's resourceVersion and
/// the last object served.
#[derive(Serialize, Deserialize)]
struct Continue {
    rv: u64,
    namespace: String,
    name: String,
}

impl ListRequest {
    pub fn new(query: &HashMap<String, String>, headers: &HeaderMap) -> Result<Self, ApiError> {
        let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
            None | Some(Ok(0)) => usize::MAX,
            Some(Ok(limit)) => limit,
            Some(Err(_)) => {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "limit must be a non-negative integer",
                ));
            }
        };
        let from = match query.get("continue").filter(|c| !c.is_empty()) {
            None => None,
            Some(token) => Some(decode(token).ok_or_else(|| {
                ApiError::new(
                    400,
                    "BadRequest",
                    format!("continue key is not valid: {token:?} is not a token this server gave"),
                )
            })?),
        };
        let metadata_only = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|accept| accept.contains("as=PartialObjectMetadataList"));
        Ok(ListRequest {
            limit,
            from,
            metadata_only,
        })
    }

    /// The list body: one page of the selected objects (or of their
    /// metadata), with a `continue` token when more remain.
    pub fn answer(
        &self,
        store: &Store,
        kind: &Kind,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Value, ApiError> {
        if let Some(from) = &self.from
            && !store.keeps_events_since(from.rv)
        {
            return Err(ApiError::new(
                410,
                "Expired",
                format!(
                    "the continue token is too old: the changes since resourceVersion {} are no longer kept; list again from the start",
                    from.rv
                ),
            ));
        }
        let after = self.from.as_ref().map(|c| Position {
            namespace: c.namespace.clone(),
            name: c.name.clone(),
        });
        let page = store.list_page(kind, namespace, selector, self.limit, after.as_ref())?;
        let resource_version = self.from.as_ref().map_or(page.resource_version, |c| c.rv);
        let mut metadata = json!({ "resourceVersion": resource_version.to_string() });
        if let Some(next) = page.next {
            metadata["continue"] = json!(encode(&Continue {
                rv: resource_version,
                namespace: next.namespace,
                name: next.name,
            }));
        }
        let (list_kind, api_version, items) = if self.metadata_only {
            let items: Vec<Value> = page
                .items
                .into_iter()
                .map(|mut object| {
                    json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": object["metadata"].take() })
                })
                .collect();
            (
                "PartialObjectMetadataList".to_owned(),
                "meta.k8s.io/v1".to_owned(),
                items,
            )
        } else {
            (format!("{}List", kind.kind), kind.api_version(), page.items)
        };
        Ok(
            json!({ "kind": list_kind, "apiVersion": api_version, "metadata": metadata, "items": items }),
        )
    }
}

fn encode(token: &Continue) -> String {
    let json = serde_json::to_vec(token).expect("tokens serialize");
    data_encoding::BASE64URL_NOPAD.encode(&json)
}

fn decode(token: &str) -> Option<Continue> {
    let json = data_encoding::BASE64URL_NOPAD
        .decode(token.as_bytes())
        .ok()?;
    serde_json::from_slice(&json).ok()
}
