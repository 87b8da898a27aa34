//! Writing an object so that it appears whole or not at all, with bounded
//! memory.
//!
//! A body up to [`PART_SIZE`] goes up in one PutObject. A larger one goes up
//! as a multipart upload, which S3 makes visible only on
//! CompleteMultipartUpload and which is aborted on any failure. Each
//! multipart upload reuses one [`PART_SIZE`] buffer for all its parts, and
//! at most [`MAX_UPLOADS_IN_FLIGHT`] such buffers exist at once
//! ([`UploadSlots`]); small bodies, most files, need none.
//!
//! The request that makes the object visible (the PutObject, or the
//! CompleteMultipartUpload) runs in the key's turn, followed in the same
//! turn by the record of the object's size and the settling of its claim
//! (see `record`).

use std::io::Read;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusty_s3::Method;
use rusty_s3::actions::{CompleteMultipartUploadResponse, CreateMultipartUpload};

use super::error::{check_write, missing, store_error, unexpected};
use super::record::Place;
use super::request::{drain, header, sign, xml_text};
use super::{S3Blobs, Target, quoted};
use crate::blob::{BlobError, Settle, fill};

/// Size of every part of a multipart upload but the last, and the largest
/// body sent as a single PutObject. S3 wants parts of at least 5 MiB; 8 MiB
/// is what the AWS CLI uses, and bounds each upload's buffer.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// S3 refuses multipart uploads of more parts (about 78 GiB at 8 MiB).
const MAX_PARTS: usize = 10_000;

/// Bodies shorter than this go up from a buffer of their own, without an
/// upload slot.
const SMALL_BODY: usize = 64 * 1024;

/// Uploads that may hold a [`PART_SIZE`] buffer at once (128 MiB in all);
/// one more waits up to `UPLOAD_SLOT_WAIT` for a slot, then gets `503`.
pub const MAX_UPLOADS_IN_FLIGHT: usize = 16;
pub(super) const UPLOAD_SLOT_WAIT: Duration = Duration::from_secs(30);

/// Bounds the part buffers of uploads in flight: without it, every worker
/// (up to --max-connections) could hold its own 8 MiB.
#[derive(Debug)]
pub(super) struct UploadSlots {
    free: Mutex<usize>,
    freed: Condvar,
    wait: Duration,
}

/// A taken upload slot, given back on drop.
struct UploadSlot<'s>(&'s UploadSlots);

impl UploadSlots {
    pub(super) fn new(count: usize, wait: Duration) -> UploadSlots {
        UploadSlots {
            free: Mutex::new(count),
            freed: Condvar::new(),
            wait,
        }
    }

    fn take(&self) -> Result<UploadSlot<'_>, BlobError> {
        let free = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut free, _) = self
            .freed
            .wait_timeout_while(free, self.wait, |free| *free == 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *free == 0 {
            return Err(BlobError::Busy(format!(
                "{MAX_UPLOADS_IN_FLIGHT} uploads to the object store are in progress"
            )));
        }
        *free -= 1;
        Ok(UploadSlot(self))
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        *self
            .0
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// One object being written: where it goes, as what, and the condition the
/// store is asked to enforce, the same for every request of the write.
pub(super) struct Upload<'a> {
    pub(super) target: &'a Target,
    /// The key in the bucket.
    pub(super) object: &'a str,
    /// The account and its key, as the size record names them.
    pub(super) namespace: &'a str,
    pub(super) key: &'a str,
    pub(super) content_type: &'a str,
    /// `If-Match: <ETag>` or `If-None-Match: *`, sent with the request that
    /// makes the object visible.
    pub(super) guard: Option<(&'static str, &'a str)>,
    /// Told of the recorded size once the object is visible.
    pub(super) settle: Settle<'a>,
}

impl S3Blobs {
    /// Streams `body` to the upload's object; returns its size and ETag.
    /// See the module documentation for how the object appears all at once.
    pub(super) fn upload(
        &self,
        upload: &Upload<'_>,
        body: &mut dyn Read,
    ) -> Result<(u64, String), BlobError> {
        // Small bodies (most files) need no slot: only a body that fills
        // this first read waits for one and its PART_SIZE buffer, so slow
        // clients sending small files cannot hold the slots.
        let mut first = vec![0u8; SMALL_BODY];
        let first_len = fill(body, &mut first).map_err(BlobError::Body)?;
        if first_len < SMALL_BODY {
            let bytes = &first[..first_len];
            let etag = self.finish(upload, first_len as u64, || self.put_object(upload, bytes))?;
            return Ok((first_len as u64, etag));
        }
        let _slot = self.uploads.take()?;
        // Zeroed pages are only mapped when written: a short body touches
        // little of the buffer.
        let mut buffer = vec![0u8; PART_SIZE];
        buffer[..SMALL_BODY].copy_from_slice(&first);
        drop(first);
        let filled = SMALL_BODY + fill(body, &mut buffer[SMALL_BODY..]).map_err(BlobError::Body)?;
        // A full buffer may also be the whole body: peek one byte to know.
        let mut peeked = [0u8; 1];
        if filled < PART_SIZE || fill(body, &mut peeked).map_err(BlobError::Body)? == 0 {
            let bytes = &buffer[..filled];
            let etag = self.finish(upload, filled as u64, || self.put_object(upload, bytes))?;
            return Ok((filled as u64, etag));
        }

        let multipart = Multipart::begin(self, upload)?;
        let result =
            multipart
                .send_parts(&mut buffer, peeked[0], body)
                .and_then(|(size, etags)| {
                    let etag = self.finish(upload, size, || multipart.complete(&etags))?;
                    Ok((size, etag))
                });
        if result.is_err() {
            multipart.abort();
        }
        result
    }

    /// Runs `visible`, the request that makes the upload's object visible,
    /// in the key's turn, where its `size` is recorded and settled (see
    /// `record`): the object's ETag.
    fn finish(
        &self,
        upload: &Upload<'_>,
        size: u64,
        visible: impl FnOnce() -> Result<String, BlobError>,
    ) -> Result<String, BlobError> {
        let place = Place {
            namespace: upload.namespace,
            key: upload.key,
            object: upload.object,
        };
        self.record.change(place, Some(size), upload.settle, || {
            Ok((visible()?, Some(size)))
        })
    }

    /// Sends a body that fits one part as a single PutObject; returns the
    /// new ETag.
    fn put_object(&self, upload: &Upload<'_>, bytes: &[u8]) -> Result<String, BlobError> {
        let target = upload.target;
        let action = target
            .bucket
            .put_object(Some(&target.credentials), upload.object);
        let mut headers = vec![("content-type", upload.content_type)];
        headers.extend(upload.guard);
        let mut response = self.client.call(action, &headers, bytes)?;
        let status = response.status().as_u16();
        check_write(&mut response, target.keys)?;
        drain(&mut response);
        header(response.headers(), "etag")
            .map(quoted)
            .ok_or_else(|| missing("PutObject", &format!("ETag (HTTP {status})")))
    }
}

/// A multipart upload the store has begun: parts go up under its id, and
/// nothing is visible until it is completed.
struct Multipart<'a> {
    blobs: &'a S3Blobs,
    upload: &'a Upload<'a>,
    id: String,
}

impl<'a> Multipart<'a> {
    fn begin(blobs: &'a S3Blobs, upload: &'a Upload<'a>) -> Result<Multipart<'a>, BlobError> {
        let target = upload.target;
        let action = target
            .bucket
            .create_multipart_upload(Some(&target.credentials), upload.object);
        let mut response =
            blobs
                .client
                .call(action, &[("content-type", upload.content_type)], ())?;
        check_write(&mut response, target.keys)?;
        let xml = xml_text(&mut response)?;
        let id = CreateMultipartUpload::parse_response(&xml)
            .map_err(|err| unexpected("CreateMultipartUpload", &err.to_string()))?
            .upload_id()
            .to_owned();
        Ok(Multipart { blobs, upload, id })
    }

    /// Sends the full `buffer` as part 1, then `peeked` and the rest of
    /// `body` part by part through the same buffer: the size sent and each
    /// part's ETag. The caller completes the upload, or aborts it on error.
    fn send_parts(
        &self,
        buffer: &mut [u8],
        peeked: u8,
        body: &mut dyn Read,
    ) -> Result<(u64, Vec<String>), BlobError> {
        let mut etags: Vec<String> = Vec::new();
        let mut size = 0u64;
        let mut filled = buffer.len();
        let mut carried = Some(peeked);
        loop {
            etags.push(self.send_part(etags.len() + 1, &buffer[..filled])?);
            size += filled as u64;
            // `fill` only stops short at the end of the body.
            if filled < buffer.len() {
                break;
            }
            let start = match carried.take() {
                Some(byte) => {
                    buffer[0] = byte;
                    1
                }
                None => 0,
            };
            filled = start + fill(body, &mut buffer[start..]).map_err(BlobError::Body)?;
            if filled == 0 {
                break;
            }
        }
        Ok((size, etags))
    }

    /// Sends part `number` (from 1); returns its ETag.
    fn send_part(&self, number: usize, bytes: &[u8]) -> Result<String, BlobError> {
        let part_number = match u16::try_from(number) {
            Ok(n) if number <= MAX_PARTS => n,
            _ => {
                return Err(BlobError::Upstream(format!(
                    "the file needs more than {MAX_PARTS} parts of {PART_SIZE} bytes"
                )));
            }
        };
        let target = self.upload.target;
        let action = target.bucket.upload_part(
            Some(&target.credentials),
            self.upload.object,
            part_number,
            &self.id,
        );
        let mut response = self.blobs.client.call(action, &[], bytes)?;
        check_write(&mut response, target.keys)?;
        drain(&mut response);
        let etag =
            header(response.headers(), "etag").ok_or_else(|| missing("UploadPart", "ETag"))?;
        Ok(etag.to_owned())
    }

    /// Makes the object of the sent parts visible, under the upload's guard;
    /// returns its ETag.
    fn complete(&self, etags: &[String]) -> Result<String, BlobError> {
        let target = self.upload.target;
        let mut action = target.bucket.complete_multipart_upload(
            Some(&target.credentials),
            self.upload.object,
            &self.id,
            etags.iter().map(String::as_str),
        );
        let headers: Vec<_> = self.upload.guard.into_iter().collect();
        let url = sign(&mut action, &headers);
        let mut response =
            self.blobs
                .client
                .send(Method::Post, &url, &headers, action.body().as_str())?;
        check_write(&mut response, target.keys)?;
        // S3 may answer 200 and still fail: the body says which.
        let xml = xml_text(&mut response)?;
        match CompleteMultipartUploadResponse::parse(&xml) {
            Ok(done) => Ok(quoted(done.etag())),
            Err(_) => Err(store_error(200, &xml, target.keys)),
        }
    }

    /// Best effort: parts left behind cost storage until the store's
    /// lifecycle rules (if any) clean them, but are never visible.
    fn abort(&self) {
        let target = self.upload.target;
        let action = target.bucket.abort_multipart_upload(
            Some(&target.credentials),
            self.upload.object,
            &self.id,
        );
        if let Ok(mut response) = self.blobs.client.call(action, &[], ()) {
            drain(&mut response);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_slots_are_bounded_and_given_back() {
        let slots = UploadSlots::new(2, Duration::from_millis(20));
        let first = slots.take().unwrap();
        let _second = slots.take().unwrap();
        assert!(matches!(slots.take(), Err(BlobError::Busy(_))));
        drop(first);
        let _third = slots.take().unwrap();
        // A slot given back while another waits wakes it.
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| UploadSlots::take(&slots).map(|_| ()).is_ok());
            drop(_third);
            assert!(waiter.join().unwrap());
        });
    }
}
