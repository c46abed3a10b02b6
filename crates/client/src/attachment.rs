//! Attachments: sealed on this device with a fresh key, uploaded as ciphertext to the
//! server's blob store, and described (key, digest, size) inside the end-to-end encrypted
//! message. Neither the server nor anyone who learns the blob id can read the file.
//!
//! Format: the file is cut into 64 KiB segments sealed with ChaCha20-Poly1305 in the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015; the `aead::stream` implementation):
//! each segment carries its own tag and the last one is marked, so a reordered, truncated or
//! extended ciphertext fails to open. The nonce prefix is fixed because every key seals one
//! file only. The digest is SHA-256 over the whole ciphertext, checked before the file is
//! given to the user.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use rampart_core::limits::{ATTACHMENT_SEGMENT_BYTES, MAX_ATTACHMENT_BYTES, MAX_ATTACHMENT_CHUNK_BYTES};
use rampart_core::{GroupId, MessageId};
use rampart_proto::{AttachmentPointer, ClientRequest, ContentBody, ErrorCode, ResponseBody};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::client::Client;
use crate::error::ClientError;
use crate::net::Connection;

const SEGMENT: usize = ATTACHMENT_SEGMENT_BYTES as usize;
const TAG: usize = 16;
/// STREAM with a 32-bit counter takes 7 bytes of the 12-byte nonce.
const NONCE_PREFIX: [u8; 7] = [0; 7];

/// Ciphertext length for a plaintext of `len` bytes: one tag per segment, at least one segment.
pub fn sealed_len(len: u64) -> u64 {
    let segments = len.div_ceil(ATTACHMENT_SEGMENT_BYTES).max(1);
    len + segments * TAG as u64
}

fn attachment_error(msg: impl Into<String>) -> ClientError {
    ClientError::Attachment(msg.into())
}

/// Seals a file segment by segment; the caller feeds exactly `len` bytes.
struct Sealer {
    stream: Option<EncryptorBE32<ChaCha20Poly1305>>,
    segments_left: u64,
    digest: Sha256,
}

impl Sealer {
    fn new(key: &[u8; 32], len: u64) -> Self {
        let aead = ChaCha20Poly1305::new(key.into());
        Self {
            stream: Some(EncryptorBE32::from_aead(aead, (&NONCE_PREFIX).into())),
            segments_left: len.div_ceil(ATTACHMENT_SEGMENT_BYTES).max(1),
            digest: Sha256::new(),
        }
    }

    /// Seal the next segment (a full one unless it is the last).
    fn seal(&mut self, segment: &[u8], out: &mut Vec<u8>) -> Result<(), ClientError> {
        let failed = |_| attachment_error("encryption failed");
        let sealed = if self.segments_left == 1 {
            let stream = self.stream.take().ok_or_else(|| attachment_error("sealed past the end"))?;
            stream.encrypt_last(segment).map_err(failed)?
        } else {
            let stream = self.stream.as_mut().ok_or_else(|| attachment_error("sealed past the end"))?;
            stream.encrypt_next(segment).map_err(failed)?
        };
        self.segments_left = self.segments_left.saturating_sub(1);
        self.digest.update(&sealed);
        out.extend_from_slice(&sealed);
        Ok(())
    }
}

/// Opens a ciphertext as it arrives, writing the plaintext out; knows the expected length.
struct Opener {
    stream: Option<DecryptorBE32<ChaCha20Poly1305>>,
    sealed_left: u64,
    buffer: Vec<u8>,
    digest: Sha256,
}

impl Opener {
    fn new(key: &[u8; 32], plain_len: u64) -> Self {
        let aead = ChaCha20Poly1305::new(key.into());
        Self {
            stream: Some(DecryptorBE32::from_aead(aead, (&NONCE_PREFIX).into())),
            sealed_left: sealed_len(plain_len),
            buffer: Vec::with_capacity(SEGMENT + TAG),
            digest: Sha256::new(),
        }
    }

    fn push(&mut self, mut data: &[u8], out: &mut impl Write) -> Result<(), ClientError> {
        if data.len() as u64 > self.sealed_left.saturating_sub(self.buffer.len() as u64) {
            return Err(attachment_error("the attachment is longer than its sender said"));
        }
        self.digest.update(data);
        while !data.is_empty() {
            let take = (SEGMENT + TAG - self.buffer.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.buffer.extend_from_slice(head);
            data = rest;
            let is_last = self.buffer.len() as u64 == self.sealed_left;
            if self.buffer.len() == SEGMENT + TAG || is_last {
                self.open_segment(is_last, out)?;
            }
        }
        Ok(())
    }

    fn open_segment(&mut self, last: bool, out: &mut impl Write) -> Result<(), ClientError> {
        let tampered =
            |_| attachment_error("the attachment was altered or truncated (a segment failed to open)");
        let plain = if last {
            let stream = self.stream.take().ok_or_else(|| attachment_error("data past the last segment"))?;
            stream.decrypt_last(self.buffer.as_slice()).map_err(tampered)?
        } else {
            let stream =
                self.stream.as_mut().ok_or_else(|| attachment_error("data past the last segment"))?;
            stream.decrypt_next(self.buffer.as_slice()).map_err(tampered)?
        };
        self.sealed_left -= self.buffer.len() as u64;
        self.buffer.clear();
        out.write_all(&plain).map_err(|e| attachment_error(format!("cannot write the file: {e}")))
    }

    /// Everything arrived: the last segment opened and the digest matches.
    fn finish(self, digest: &[u8; 32]) -> Result<(), ClientError> {
        if self.stream.is_some() || self.sealed_left != 0 {
            return Err(attachment_error("the attachment is truncated"));
        }
        if self.digest.finalize().as_slice() != digest {
            return Err(attachment_error("the attachment's digest does not match what its sender sent"));
        }
        Ok(())
    }
}

/// A file name from a remote sender made safe to create in a directory of ours: no path, no
/// hidden files, no control characters.
pub fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    // At most 200 bytes (file systems allow 255; a download adds a temporary suffix).
    let mut cleaned = String::new();
    for c in base.chars().filter(|c| !c.is_control()) {
        if cleaned.len() + c.len_utf8() > 200 {
            break;
        }
        cleaned.push(c);
    }
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() { "attachment".to_owned() } else { cleaned }
}

/// `dir/name`, or `dir/stem (n).ext` if that exists.
fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1..).map(|n| dir.join(format!("{stem} ({n}){ext}"))).find(|p| !p.exists()).unwrap_or(first)
}

fn guess_mime(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "wav" => "audio/wav",
        "ogg" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Retry a request the server rate-limited, after the wait it asked for.
async fn request_patiently(
    conn: &mut Connection,
    request: ClientRequest,
) -> Result<ResponseBody, ClientError> {
    loop {
        match conn.request(request.clone()).await {
            Err(ClientError::Server(e)) if e.code == ErrorCode::RateLimited && e.retry_after_ms > 0 => {
                let wait = u64::from(e.retry_after_ms).min(60_000);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            other => return other,
        }
    }
}

impl Client {
    /// Encrypt the file at `path`, upload it and send it to the conversation. `progress` gets
    /// (bytes done, bytes in all) as the upload goes.
    pub async fn send_file_on(
        &mut self,
        conn: &mut Connection,
        group: &GroupId,
        path: &Path,
        caption: &str,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<MessageId, ClientError> {
        let open_err = |e: std::io::Error| attachment_error(format!("cannot read {}: {e}", path.display()));
        let mut file = std::fs::File::open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        if len > MAX_ATTACHMENT_BYTES {
            return Err(attachment_error(format!(
                "{} is {len} bytes; attachments are limited to 100 MiB",
                path.display()
            )));
        }
        let name =
            safe_file_name(&path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let key = Zeroizing::new(rand::random::<[u8; 32]>());
        let total = sealed_len(len);
        let (blob, chunk) = match request_patiently(conn, ClientRequest::StartUpload { size: total }).await? {
            ResponseBody::UploadStarted { blob, chunk_bytes } => {
                (blob, (chunk_bytes as usize).clamp(SEGMENT + TAG, MAX_ATTACHMENT_CHUNK_BYTES))
            }
            _ => return Err(ClientError::Unexpected("start upload")),
        };
        let mut sealer = Sealer::new(&key, len);
        let mut segment = vec![0u8; SEGMENT];
        let mut pending = Vec::with_capacity(chunk + SEGMENT + TAG);
        let (mut read_total, mut offset) = (0u64, 0u64);
        progress(0, len);
        loop {
            let want = usize::try_from((len - read_total).min(SEGMENT as u64)).unwrap_or(SEGMENT);
            let piece = segment.get_mut(..want).ok_or_else(|| attachment_error("segment size"))?;
            file.read_exact(piece)
                .map_err(|_| attachment_error("the file changed while it was being sent"))?;
            read_total += want as u64;
            sealer.seal(piece, &mut pending)?;
            let last = read_total == len;
            while pending.len() >= chunk || (last && !pending.is_empty()) {
                let take = pending.len().min(chunk);
                let data: Vec<u8> = pending.drain(..take).collect();
                let sent = data.len() as u64;
                match request_patiently(conn, ClientRequest::UploadChunk { blob, offset, data: data.into() })
                    .await?
                {
                    ResponseBody::ChunkStored { stored, complete } => {
                        offset += sent;
                        if stored != offset || complete != (offset == total) {
                            return Err(attachment_error("the server stored the upload out of step"));
                        }
                    }
                    _ => return Err(ClientError::Unexpected("upload chunk")),
                }
                progress(read_total.min(len), len);
            }
            if last {
                break;
            }
        }
        let digest: [u8; 32] = sealer.digest.finalize().into();
        let pointer = AttachmentPointer {
            mime: guess_mime(&name).to_owned(),
            name,
            size: len,
            blob_id: blob,
            key: *key,
            digest,
            caption: caption.to_owned(),
        };
        let (message_id, _) = self.send_content(conn, group, ContentBody::Attachment(pointer)).await?;
        Ok(message_id)
    }

    /// Download, check and decrypt the attachment on history line `seq` into `dest_dir`.
    /// Nothing appears under its name unless every segment opened and the digest matched.
    pub async fn download_attachment_on(
        &mut self,
        conn: &mut Connection,
        seq: i64,
        dest_dir: &Path,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<PathBuf, ClientError> {
        let pointer = self
            .profile
            .attachment(seq)?
            .ok_or_else(|| attachment_error(format!("message {seq} has no attachment")))?;
        std::fs::create_dir_all(dest_dir)
            .map_err(|e| attachment_error(format!("cannot create {}: {e}", dest_dir.display())))?;
        let name = safe_file_name(&pointer.name);
        let partial = dest_dir.join(format!(".{name}.{}.part", hex::encode(&pointer.blob_id[..4])));
        let result = download_into(conn, &pointer, &partial, progress).await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        let path = unused_path(dest_dir, &name);
        std::fs::rename(&partial, &path)
            .map_err(|e| attachment_error(format!("cannot save the file: {e}")))?;
        self.profile.set_attachment_path(seq, &path.to_string_lossy())?;
        Ok(path)
    }
}

async fn download_into(
    conn: &mut Connection,
    pointer: &AttachmentPointer,
    partial: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(), ClientError> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(partial)
            .map_err(|e| attachment_error(format!("cannot create the file: {e}")))?,
    );
    let total = sealed_len(pointer.size);
    let mut opener = Opener::new(&pointer.key, pointer.size);
    let mut offset = 0u64;
    progress(0, pointer.size);
    while offset < total {
        let length = u32::try_from((total - offset).min(MAX_ATTACHMENT_CHUNK_BYTES as u64)).unwrap_or(1);
        let request = ClientRequest::Download { blob: pointer.blob_id, offset, length };
        let data = match request_patiently(conn, request).await? {
            ResponseBody::BlobData { total: stored, data } => {
                if stored != total {
                    return Err(attachment_error(format!(
                        "the stored attachment is {stored} bytes, its sender said {total}"
                    )));
                }
                data
            }
            _ => return Err(ClientError::Unexpected("download")),
        };
        if data.is_empty() {
            return Err(attachment_error("the attachment is truncated"));
        }
        opener.push(&data, &mut out)?;
        offset += data.len() as u64;
        let done = u128::from(offset) * u128::from(pointer.size) / u128::from(total.max(1));
        progress(u64::try_from(done).unwrap_or(pointer.size), pointer.size);
    }
    opener.finish(&pointer.digest)?;
    let file = out.into_inner().map_err(|e| attachment_error(format!("cannot write the file: {e}")))?;
    file.sync_all().map_err(|e| attachment_error(format!("cannot write the file: {e}")))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn seal_all(key: &[u8; 32], plain: &[u8]) -> (Vec<u8>, [u8; 32]) {
        let mut s = Sealer::new(key, plain.len() as u64);
        let mut out = Vec::new();
        let mut chunks: Vec<&[u8]> = plain.chunks(SEGMENT).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for c in chunks {
            s.seal(c, &mut out).unwrap();
        }
        (out, s.digest.finalize().into())
    }

    fn open_all(
        key: &[u8; 32],
        len: u64,
        sealed: &[u8],
        digest: &[u8; 32],
        piece: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let mut o = Opener::new(key, len);
        let mut out = Vec::new();
        for p in sealed.chunks(piece.max(1)) {
            o.push(p, &mut out)?;
        }
        o.finish(digest)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_segment_boundaries() {
        let key = [7u8; 32];
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 3 * SEGMENT + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (sealed, digest) = seal_all(&key, &plain);
            assert_eq!(sealed.len() as u64, sealed_len(len as u64), "len {len}");
            for piece in [1000, SEGMENT + TAG, 1 << 20] {
                assert_eq!(open_all(&key, len as u64, &sealed, &digest, piece).unwrap(), plain, "len {len}");
            }
        }
    }

    #[test]
    fn tampering_truncation_and_wrong_digest_are_refused() {
        let key = [9u8; 32];
        let plain = vec![42u8; 2 * SEGMENT + 5];
        let (sealed, digest) = seal_all(&key, &plain);
        let len = plain.len() as u64;
        let mut flipped = sealed.clone();
        flipped[SEGMENT + 3] ^= 1;
        let e = open_all(&key, len, &flipped, &digest, 4096).unwrap_err();
        assert!(e.to_string().contains("altered"), "{e}");
        // Cut at a segment boundary: every segment present opens, but the last is missing.
        let cut = &sealed[..SEGMENT + TAG];
        let e = open_all(&key, len, cut, &digest, 4096).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // A sender lying about the size: the last-segment flag no longer lines up.
        let e = open_all(&key, len - 5, &sealed, &digest, 4096).unwrap_err();
        assert!(e.to_string().contains("longer") || e.to_string().contains("altered"), "{e}");
        let mut other = digest;
        other[0] ^= 1;
        let e = open_all(&key, len, &sealed, &other, 4096).unwrap_err();
        assert!(e.to_string().contains("digest"), "{e}");
        let e = open_all(&[1u8; 32], len, &sealed, &digest, 4096).unwrap_err();
        assert!(e.to_string().contains("altered"), "{e}");
    }

    #[test]
    fn remote_file_names_cannot_escape() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(safe_file_name(""), "attachment");
        assert_eq!(safe_file_name(".."), "attachment");
        assert_eq!(safe_file_name("report.pdf"), "report.pdf");
        let long = "é".repeat(200);
        assert!(safe_file_name(&long).len() <= 200);
    }

    #[test]
    fn a_taken_name_gets_a_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"x").unwrap();
        assert_eq!(unused_path(dir.path(), "a.txt"), dir.path().join("a (1).txt"));
        assert_eq!(unused_path(dir.path(), "b.txt"), dir.path().join("b.txt"));
    }
}
