//! This device's MLS state (`mls.db`): openmls' SQLite storage provider, under the profile's
//! key when it has a passphrase.

use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use rampart_mls::Engine;

use crate::error::ClientError;

/// How openmls' state is serialised in the profile.
#[derive(Debug, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

pub type MlsStorage = SqliteStorageProvider<JsonCodec, rusqlite::Connection>;
pub type DeviceEngine = Engine<MlsStorage>;

pub(crate) fn open_storage(
    dir: &std::path::Path,
    key: Option<&super::at_rest::ProfileKey>,
) -> Result<MlsStorage, ClientError> {
    let path = dir.join("mls.db");
    let conn = rusqlite::Connection::open(&path).map_err(|e| ClientError::KeyStore(e.to_string()))?;
    super::at_rest::apply_key(&conn, key)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    let _ = conn.pragma_update(None, "journal_mode", "WAL");
    // synchronous stays FULL: a power cut must not roll back group state that the server was
    // told (by an ack) we have. It costs an fsync per MLS write; measured in docs/benchmarks.md.
    let mut storage = MlsStorage::new(conn);
    storage.run_migrations().map_err(|e| ClientError::KeyStore(e.to_string()))?;
    Ok(storage)
}
