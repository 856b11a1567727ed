//! The archive: an object store holding a log's sealed segments
//! (`segments/<name>`) and a store's base backups
//! (`base/<checkpoint LSN>/<file>`, the manifest written last). Every upload
//! is read back and compared; uploading the same bytes again is fine, other
//! bytes under a name already taken are refused.

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::error::ArchiveError;

/// Where archived segments go.
const SEGMENTS: &str = "segments";
/// Where base backups go.
const BASES: &str = "base";

/// An archive, opened.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    url: String,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("url", &self.url).finish()
    }
}

impl Archive {
    /// Opens the archive at `url`: a directory path or a `file://` URL
    /// (created if missing).
    ///
    /// # Errors
    /// [`ArchiveError::Unsupported`] for another scheme; the directory's
    /// errors.
    pub fn open(url: &str) -> Result<Archive, ArchiveError> {
        let store: Arc<dyn ObjectStore> = match url.split_once("://") {
            None => local(url)?,
            Some(("file", rest)) => local(rest)?,
            #[cfg(feature = "s3")]
            Some(("s3", rest)) => s3(url, rest)?,
            Some((scheme, _)) => {
                return Err(ArchiveError::Unsupported(format!(
                    "{url}: this build archives to directories (or file:// URLs){}; not {scheme}://",
                    if cfg!(feature = "s3") {
                        " and s3://"
                    } else {
                        "; s3:// needs the s3 feature"
                    }
                )));
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ArchiveError::io("start the archive's runtime"))?;
        Ok(Archive {
            store,
            runtime,
            url: url.to_owned(),
        })
    }

    /// The archive's URL, as opened.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Uploads `bytes` as `name` (`segments/...` or `base/...`), reads it
    /// back and compares. The same bytes already there is success.
    ///
    /// # Errors
    /// [`ArchiveError::Conflict`] for other bytes under `name`;
    /// [`ArchiveError::Corrupt`] when what reads back differs; the store's
    /// errors.
    pub fn put_verified(&self, name: &str, bytes: &Bytes) -> Result<(), ArchiveError> {
        let location = Path::from(name);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let put = self.runtime.block_on(self.store.put_opts(
            &location,
            PutPayload::from(bytes.clone()),
            options,
        ));
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let there = self.get(name)?;
                if there != *bytes {
                    return Err(ArchiveError::Conflict {
                        name: name.to_owned(),
                    });
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let back = self.get(name)?;
        if crc32c::crc32c(&back) != crc32c::crc32c(bytes) || back.len() != bytes.len() {
            return Err(ArchiveError::Corrupt {
                name: name.to_owned(),
                detail: "what reads back differs from what was uploaded".into(),
            });
        }
        Ok(())
    }

    /// The object `name`.
    ///
    /// # Errors
    /// [`ArchiveError::Missing`] if there is none; the store's errors.
    pub fn get(&self, name: &str) -> Result<Bytes, ArchiveError> {
        let location = Path::from(name);
        self.runtime.block_on(async {
            match self.store.get(&location).await {
                Ok(r) => Ok(r.bytes().await?),
                Err(object_store::Error::NotFound { .. }) => {
                    Err(ArchiveError::Missing(name.to_owned()))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Removes `name` (retention); absent is fine.
    ///
    /// # Errors
    /// The store's errors.
    pub fn delete(&self, name: &str) -> Result<(), ArchiveError> {
        match self.runtime.block_on(self.store.delete(&Path::from(name))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The archived segments' file names, in LSN order.
    ///
    /// # Errors
    /// The store's errors.
    pub fn segments(&self) -> Result<Vec<String>, ArchiveError> {
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&Path::from(SEGMENTS))))?;
        let mut names: Vec<(u64, String)> = listed
            .objects
            .iter()
            .filter_map(|o| {
                let name = o.location.filename()?.to_owned();
                wal_engine::parse_segment_name(&name).map(|lsn| (lsn, name))
            })
            .collect();
        names.sort();
        Ok(names.into_iter().map(|(_, n)| n).collect())
    }

    /// The base backups' checkpoint LSNs, ascending: only those whose
    /// manifest (written last) is there.
    ///
    /// # Errors
    /// The store's errors.
    pub fn bases(&self) -> Result<Vec<u64>, ArchiveError> {
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&Path::from(BASES))))?;
        let mut lsns = Vec::new();
        for prefix in listed.common_prefixes {
            let Some(lsn) = prefix.filename().and_then(|f| f.parse::<u64>().ok()) else {
                continue;
            };
            let manifest = Path::from(base_object(lsn, wal_kv::inspect::MANIFEST_NAME));
            match self.runtime.block_on(self.store.head(&manifest)) {
                Ok(_) => lsns.push(lsn),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        lsns.sort_unstable();
        Ok(lsns)
    }

    /// The files of base backup `lsn` (the manifest included).
    ///
    /// # Errors
    /// The store's errors.
    pub fn base_files(&self, lsn: u64) -> Result<Vec<String>, ArchiveError> {
        let listed = self.runtime.block_on(
            self.store
                .list_with_delimiter(Some(&Path::from(format!("{BASES}/{lsn:020}")))),
        )?;
        Ok(listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }
}

/// A directory (created if missing) as an archive.
fn local(path: &str) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
    std::fs::create_dir_all(path).map_err(ArchiveError::io(format!("create {path}")))?;
    Ok(Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(FsPath::new(path))?,
    ))
}

/// `s3://bucket[/prefix]`: conditional puts (`If-None-Match`) make an upload
/// to a taken name fail, as on a directory.
#[cfg(feature = "s3")]
fn s3(url: &str, rest: &str) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
    use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
    let bucket = rest.split('/').next().unwrap_or_default();
    let prefix = rest[bucket.len()..].trim_matches('/');
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .build()
        .map_err(|e| ArchiveError::Unsupported(format!("{url}: {e}")))?;
    Ok(if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    })
}

/// The object name of archived segment `name`.
pub fn segment_object(name: &str) -> String {
    format!("{SEGMENTS}/{name}")
}

/// The object name of file `name` of base backup `lsn`.
pub fn base_object(lsn: u64, name: &str) -> String {
    format!("{BASES}/{lsn:020}/{name}")
}
