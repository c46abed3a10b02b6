//! Attachment uploads and downloads over the client's authenticated connection. The bytes are
//! ciphertext made by the sender's client; see `blobs` for how they are kept.

use bytes::Bytes;
use rampart_core::limits::{MAX_ATTACHMENT_CHUNK_BYTES, MAX_ATTACHMENT_CIPHERTEXT_BYTES};
use rampart_proto::{BlobId, ErrorCode, ResponseBody};
use tracing::{info, warn};

use crate::blobs::BlobError;
use crate::session::{Answer, Connection, err};

fn kib(len: usize) -> u32 {
    u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX)
}

fn blob_error(e: BlobError) -> rampart_proto::ErrorBody {
    match e {
        BlobError::Io(e) => {
            warn!(error = %e, "blob store I/O failed");
            err(ErrorCode::Unavailable, "the attachment store is unavailable; try again later")
        }
        BlobError::NotFound => err(ErrorCode::NoSuchRecipient, "no such attachment (it may have expired)"),
        other => err(ErrorCode::BadRequest, other.to_string()),
    }
}

impl Connection {
    /// Start an upload on this connection; one at a time, a new one abandons the last.
    pub(crate) async fn start_upload(&mut self, size: u64) -> Answer {
        let (account, device) = self.identity()?;
        if size > MAX_ATTACHMENT_CIPHERTEXT_BYTES {
            return Err(err(ErrorCode::MessageTooLarge, "attachments are limited to 100 MiB"));
        }
        let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX);
        self.limit(&self.shared.limits.stored_kib_per_account, &account, kib, "attachment storage")?;
        if let Some(old) = self.upload.take() {
            old.abandon();
        }
        let upload = self.shared.blobs.create(size).await.map_err(blob_error)?;
        info!(%device, size, "attachment upload started");
        let blob = upload.id;
        self.upload = Some(upload);
        Ok(ResponseBody::UploadStarted { blob, chunk_bytes: MAX_ATTACHMENT_CHUNK_BYTES as u32 })
    }

    pub(crate) async fn upload_chunk(&mut self, blob: BlobId, offset: u64, data: Bytes) -> Answer {
        let (_, device) = self.identity()?;
        self.limit(&self.shared.limits.upload_kib, &device, kib(data.len()), "bytes uploaded")?;
        let Some(upload) = self.upload.as_mut().filter(|u| u.id == blob) else {
            return Err(err(ErrorCode::WrongState, "no upload of this blob is under way on this connection"));
        };
        let complete = match upload.append(offset, &data).await {
            Ok(c) => c,
            Err(e) => {
                // A broken upload cannot be resumed; the client starts again.
                if let Some(u) = self.upload.take() {
                    u.abandon();
                }
                return Err(blob_error(e));
            }
        };
        let stored = upload.stored;
        if complete {
            self.upload = None;
            self.shared.metrics.attachments_stored.inc();
        }
        Ok(ResponseBody::ChunkStored { stored, complete })
    }

    pub(crate) async fn download(&mut self, blob: BlobId, offset: u64, length: u32) -> Answer {
        let (_, device) = self.identity()?;
        self.limit(&self.shared.limits.download_kib, &device, kib(length as usize), "bytes downloaded")?;
        let (total, data) = self.shared.blobs.read(&blob, offset, length).await.map_err(blob_error)?;
        Ok(ResponseBody::BlobData { total, data })
    }
}
