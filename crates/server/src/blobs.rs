//! The blob store: attachment ciphertext, one file per blob, under the data directory.
//!
//! The server never holds an attachment's key: clients encrypt before uploading and send the
//! key inside the end-to-end encrypted message. A blob is written under `incoming/` and moved
//! into place only once every byte arrived, so a half-uploaded blob is never served. A blob id
//! is 128 random bits chosen here; knowing it is what allows a download (as with Signal's CDN).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rampart_proto::BlobId;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("piece at offset {got}, expected {expected}")]
    WrongOffset { expected: u64, got: u64 },
    #[error("piece would pass the declared size of {size} bytes")]
    TooLong { size: u64 },
    #[error("no such blob")]
    NotFound,
    #[error("offset {offset} is past the blob's end ({size} bytes)")]
    PastEnd { offset: u64, size: u64 },
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// An upload in progress, owned by the connection that started it.
#[derive(Debug)]
pub struct Upload {
    pub id: BlobId,
    pub size: u64,
    pub stored: u64,
    file: fs::File,
    incoming: PathBuf,
    done: PathBuf,
}

fn name(id: &BlobId) -> String {
    hex::encode(id)
}

impl BlobStore {
    /// Open (creating) the store. Uploads left half-done by an earlier run are deleted by
    /// the sweep once they are an hour old, not here: with several server nodes sharing the
    /// directory, another node's upload may be under way.
    pub async fn open(dir: &Path) -> Result<Self, BlobError> {
        fs::create_dir_all(dir.join("incoming")).await?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub async fn create(&self, size: u64) -> Result<Upload, BlobError> {
        let id: BlobId = rand::random();
        let incoming = self.dir.join("incoming").join(name(&id));
        let file = fs::OpenOptions::new().write(true).create_new(true).open(&incoming).await?;
        Ok(Upload { id, size, stored: 0, file, incoming, done: self.dir.join(name(&id)) })
    }

    /// Read up to `length` bytes at `offset`. Returns the blob's size too.
    pub async fn read(&self, id: &BlobId, offset: u64, length: u32) -> Result<(u64, Bytes), BlobError> {
        let mut file = match fs::File::open(self.dir.join(name(id))).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        if offset > size {
            return Err(BlobError::PastEnd { offset, size });
        }
        let want = usize::try_from((size - offset).min(u64::from(length))).unwrap_or(0);
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut buf = vec![0u8; want];
        file.read_exact(&mut buf).await?;
        Ok((size, buf.into()))
    }

    /// Delete blobs older than `ttl`, and uploads untouched for an hour. Returns how many.
    pub async fn sweep(&self, ttl: Duration) -> Result<usize, BlobError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for (dir, max_age) in
            [(self.dir.clone(), ttl), (self.dir.join("incoming"), Duration::from_secs(3600))]
        {
            let mut entries = fs::read_dir(&dir).await?;
            while let Some(e) = entries.next_entry().await? {
                // An upload may complete or be abandoned while we look: skip, do not stop.
                let Ok(meta) = e.metadata().await else { continue };
                if !meta.is_file() {
                    continue;
                }
                let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
                if age > max_age && fs::remove_file(e.path()).await.is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl Upload {
    /// Append the next piece. True when the blob is complete (and now downloadable).
    pub async fn append(&mut self, offset: u64, data: &[u8]) -> Result<bool, BlobError> {
        if offset != self.stored {
            return Err(BlobError::WrongOffset { expected: self.stored, got: offset });
        }
        let end = self.stored.saturating_add(data.len() as u64);
        if end > self.size {
            return Err(BlobError::TooLong { size: self.size });
        }
        self.file.write_all(data).await?;
        self.stored = end;
        if self.stored < self.size {
            return Ok(false);
        }
        self.file.sync_all().await?;
        fs::rename(&self.incoming, &self.done).await?;
        // The rename is durable only once the directory is: the sender is about to tell
        // recipients the blob exists.
        if let Some(dir) = self.done.parent() {
            fs::File::open(dir).await?.sync_all().await?;
        }
        Ok(true)
    }

    /// Give up on the upload: its partial file goes.
    pub fn abandon(&self) {
        if self.stored < self.size {
            let _ = std::fs::remove_file(&self.incoming);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_are_served_only_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let mut up = store.create(10).await.unwrap();
        assert!(!up.append(0, b"hello").await.unwrap());
        assert!(matches!(store.read(&up.id, 0, 10).await, Err(BlobError::NotFound)));
        assert!(matches!(up.append(3, b"xx").await, Err(BlobError::WrongOffset { expected: 5, got: 3 })));
        assert!(matches!(up.append(5, b"world!").await, Err(BlobError::TooLong { size: 10 })));
        assert!(up.append(5, b"world").await.unwrap());
        let (size, data) = store.read(&up.id, 3, 4).await.unwrap();
        assert_eq!((size, &data[..]), (10, &b"lowo"[..]));
        let (_, tail) = store.read(&up.id, 8, 100).await.unwrap();
        assert_eq!(&tail[..], b"ld");
        assert!(matches!(store.read(&up.id, 11, 1).await, Err(BlobError::PastEnd { .. })));
    }

    #[tokio::test]
    async fn abandoned_and_stale_uploads_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let mut up = store.create(10).await.unwrap();
        up.append(0, b"abc").await.unwrap();
        up.abandon();
        assert_eq!(std::fs::read_dir(dir.path().join("incoming")).unwrap().count(), 0);
        let up2 = store.create(10).await.unwrap();
        drop(up2);
        // Left half-done: kept while it may still be someone's upload, swept when stale.
        assert_eq!(store.sweep(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(std::fs::read_dir(dir.path().join("incoming")).unwrap().count(), 1);
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        for e in std::fs::read_dir(dir.path().join("incoming")).unwrap().flatten() {
            std::fs::File::options().write(true).open(e.path()).unwrap().set_modified(old).unwrap();
        }
        assert_eq!(store.sweep(Duration::from_secs(3600)).await.unwrap(), 1);
        assert_eq!(std::fs::read_dir(dir.path().join("incoming")).unwrap().count(), 0);
    }
}
