//! Listing an account's objects: one ListObjectsV2 page under its
//! namespace, and, for full listings, a HEAD of each listed object.
//!
//! S3 lists keys, sizes and ETags but no content types, so a listing that
//! must show them asks each object, [`HEADS_IN_FLIGHT`] at a time on scoped
//! threads: one by one, a page of 1,000 objects would wait for 1,000 round
//! trips in a row. A listing of keys alone needs no HEADs.

use std::thread;

use rusty_s3::actions::ListObjectsV2;

use super::error::{store_error, unexpected};
use super::request::{error_text, xml_text};
use super::{S3Blobs, Target};
use crate::blob::{BlobError, MAX_KEY_BYTES, ObjectInfo, Owner};

/// Listing HEADs each object (for its content type) with this many
/// requests at a time.
const HEADS_IN_FLIGHT: usize = 8;

/// Objects listed in one page: (key in the bucket, wren key) pairs, in key
/// order, and whether more follow.
pub(super) struct Listed {
    pub(super) objects: Vec<(String, String)>,
    pub(super) truncated: bool,
}

impl S3Blobs {
    /// One ListObjectsV2 page of up to `limit` objects under the account's
    /// namespace whose keys start with `prefix` and sort after `after`.
    pub(super) fn list_objects(
        &self,
        target: &Target,
        owner: &Owner,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Listed, BlobError> {
        let namespace = self.namespace_prefix(owner);
        // No stored key is longer than MAX_KEY_BYTES, so none has a longer
        // prefix; asking would get the store's refusal instead of nothing.
        if namespace.len() + prefix.len() > MAX_KEY_BYTES {
            return Ok(Listed {
                objects: Vec::new(),
                truncated: false,
            });
        }
        let mut action = target.bucket.list_objects_v2(Some(&target.credentials));
        action.with_prefix(format!("{namespace}{prefix}"));
        if let Some(after) = after {
            action.with_start_after(format!("{namespace}{after}"));
        }
        // Asking for none would tell nothing about what follows; one key
        // tells whether the listing is truncated.
        action.with_max_keys(limit.max(1));
        let mut response = self.client.call(action, &[], ())?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = error_text(&mut response);
            return Err(store_error(status, &text, target.keys));
        }
        let xml = xml_text(&mut response)?;
        let listing = ListObjectsV2::parse_response(&xml)
            .map_err(|err| unexpected("ListObjectsV2", &err.to_string()))?;
        if limit == 0 {
            return Ok(Listed {
                objects: Vec::new(),
                truncated: !listing.contents.is_empty(),
            });
        }
        // A store that sends more than max-keys must not make a page (and
        // its HEADs) larger than asked.
        let beyond = listing.contents.len() > limit;
        let objects = listing
            .contents
            .iter()
            .take(limit)
            .filter_map(|entry| {
                let key = entry.key.strip_prefix(&namespace)?;
                Some((entry.key.clone(), key.to_owned()))
            })
            .collect();
        Ok(Listed {
            objects,
            truncated: beyond || listing.next_continuation_token.is_some(),
        })
    }

    /// HEADs `listed` (key in the bucket, wren key) pairs,
    /// [`HEADS_IN_FLIGHT`] at a time, in order; objects deleted since they
    /// were listed are left out.
    pub(super) fn head_each(
        &self,
        target: &Target,
        listed: &[(String, String)],
    ) -> Result<Vec<ObjectInfo>, BlobError> {
        let heads = |part: &[(String, String)]| -> Result<Vec<ObjectInfo>, BlobError> {
            let mut found = Vec::with_capacity(part.len());
            for (object, key) in part {
                found.extend(self.head_object(target, object, key)?);
            }
            Ok(found)
        };
        if listed.len() <= 1 {
            return heads(listed);
        }
        let chunk = listed.len().div_ceil(HEADS_IN_FLIGHT);
        let results: Vec<Result<Vec<ObjectInfo>, BlobError>> = thread::scope(|scope| {
            let workers: Vec<_> = listed
                .chunks(chunk)
                .map(|part| {
                    thread::Builder::new()
                        .name("wren-s3-head".to_owned())
                        .spawn_scoped(scope, move || heads(part))
                })
                .collect();
            // Every thread is joined before any error is returned.
            workers
                .into_iter()
                .map(|worker| match worker {
                    Ok(handle) => handle.join().unwrap_or_else(|_| {
                        Err(BlobError::Upstream("a listing thread panicked".to_owned()))
                    }),
                    Err(err) => Err(BlobError::Upstream(format!(
                        "cannot start a listing thread: {err}"
                    ))),
                })
                .collect()
        });
        let mut objects = Vec::with_capacity(listed.len());
        for found in results {
            objects.extend(found?);
        }
        Ok(objects)
    }
}
