//! A storage that passes every call through to another, except where a
//! test hooks in: to hold a sync, fail it, or note that a file was created.

use std::sync::Arc;

use wal_io::{Backend, DirLock, FileOptions, FileRef, IoError, IoQueue, Storage, StorageFile};

/// Returns an error to fail the call with, or `None` to pass it through.
type Hook = Box<dyn Fn() -> Option<IoError> + Send + Sync>;

/// The same, given a file's name.
type NameHook = Box<dyn Fn(&str) -> Option<IoError> + Send + Sync>;

/// Told of a read: the file's name and the bytes asked for.
type ReadHook = Box<dyn Fn(&str, usize) + Send + Sync>;

/// What a test hooks in. Each hook runs on the calling thread, before the
/// call; it may block (to hold the call) and may fail it.
#[derive(Default)]
pub struct Hooks {
    /// Before a directory sync.
    pub sync_dir: Option<Hook>,
    /// Before a file's data sync, with the file's name.
    pub sync_data: Option<NameHook>,
    /// Before a file is created, with its name.
    pub create: Option<NameHook>,
    /// Before a read, to watch it (it may block, not fail).
    pub read: Option<ReadHook>,
}

/// Wraps `inner`, giving `hooks` a say.
pub fn hooked(inner: Arc<dyn Storage>, hooks: Hooks) -> Arc<dyn Storage> {
    Arc::new(Hooked {
        inner,
        hooks: Arc::new(hooks),
    })
}

/// The hook's verdict as a result.
fn verdict(failed: Option<IoError>) -> Result<(), IoError> {
    failed.map_or(Ok(()), Err)
}

struct Hooked {
    inner: Arc<dyn Storage>,
    hooks: Arc<Hooks>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Hooked {
    fn wrap(&self, file: FileRef) -> FileRef {
        Arc::new(HookedFile {
            inner: file,
            hooks: self.hooks.clone(),
        })
    }
}

impl Storage for Hooked {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    fn create(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        verdict(self.hooks.create.as_ref().and_then(|h| h(name)))?;
        self.inner.create(name, options).map(|f| self.wrap(f))
    }
    fn open(&self, name: &str, options: FileOptions) -> Result<FileRef, IoError> {
        self.inner.open(name, options).map(|f| self.wrap(f))
    }
    fn remove(&self, name: &str) -> Result<(), IoError> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        self.inner.rename(from, to)
    }
    fn list(&self) -> Result<Vec<String>, IoError> {
        self.inner.list()
    }
    fn sync_dir(&self) -> Result<(), IoError> {
        verdict(self.hooks.sync_dir.as_ref().and_then(|h| h()))?;
        self.inner.sync_dir()
    }
    fn lock(&self) -> Result<DirLock, IoError> {
        self.inner.lock()
    }
    fn queue(&self, depth: u32) -> Result<Box<dyn IoQueue>, IoError> {
        self.inner.queue(depth)
    }
}

struct HookedFile {
    inner: FileRef,
    hooks: Arc<Hooks>,
}

impl std::fmt::Debug for HookedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookedFile")
            .field("inner", &self.inner)
            .finish()
    }
}

impl StorageFile for HookedFile {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn options(&self) -> FileOptions {
        self.inner.options()
    }
    fn write_at(&self, offset: u64, bufs: &[&[u8]]) -> Result<(), IoError> {
        self.inner.write_at(offset, bufs)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        if let Some(h) = &self.hooks.read {
            h(self.inner.name(), buf.len());
        }
        self.inner.read_at(offset, buf)
    }
    fn sync_data(&self) -> Result<(), IoError> {
        verdict(
            self.hooks
                .sync_data
                .as_ref()
                .and_then(|h| h(self.inner.name())),
        )?;
        self.inner.sync_data()
    }
    fn allocate(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.inner.allocate(offset, len)
    }
    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.inner.set_len(len)
    }
    fn size(&self) -> Result<u64, IoError> {
        self.inner.size()
    }
    fn drop_cache(&self) -> Result<(), IoError> {
        self.inner.drop_cache()
    }
    fn close(&self) {
        self.inner.close();
    }
}
