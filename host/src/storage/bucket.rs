//! [`Storage`] in a prefix of an S3 or S3-compatible bucket, through the
//! `object_store` crate.
//!
//! Credentials, region and endpoint come from the standard AWS environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`
//! or `AWS_ENDPOINT_URL_S3` for S3-compatible servers), then from the
//! profile `AWS_PROFILE` (default `default`) of the shared files
//! (`~/.aws/credentials`, `~/.aws/config`, or `AWS_SHARED_CREDENTIALS_FILE`,
//! `AWS_CONFIG_FILE`), then from the instance or container credentials
//! object_store finds itself. Nothing secret is ever printed: messages name
//! the object as `s3://bucket/key`.
//!
//! Create-only writes are conditional puts (`If-None-Match: *`,
//! `PutMode::Create`); large files go up in multipart uploads of
//! [`PART_BYTES`] (their key is claimed first by the checkpoint writer, see
//! `checkpoint::remote`). Calls run on the bucket's own thread (a Tokio
//! runtime of its own), so they can be made from any thread, async code
//! included.

use super::{ObjectInfo, Storage, StorageError, check_key};
use crate::digest::Sha256;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files larger than this go up in a multipart upload, in parts of this size.
pub const PART_BYTES: usize = 8 << 20;

/// Most objects one listing may hold (a listing is read whole: `list`,
/// `prune`, `--latest`, the feedback desk).
pub const MAX_LISTED_OBJECTS: usize = 1_000_000;

/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// `s3://bucket/prefix`: a bucket and a key prefix (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    /// The bucket's name.
    pub bucket: String,
    /// The prefix every key is under, without a trailing `/` (may be empty).
    pub prefix: String,
}

impl BucketUrl {
    /// Parse `s3://bucket[/prefix]`. The bucket name follows S3's rules
    /// (3 to 63 of `a-z 0-9 . -`); the prefix is valid key segments.
    pub fn parse(url: &str) -> Result<BucketUrl, StorageError> {
        let bad =
            |why: &str| StorageError::Config(format!("'{}' is not a bucket URL: {why}", crate::redacted_url(url)));
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("it must start with s3://"))?;
        if rest.contains('@') || rest.contains('?') || rest.contains('#') {
            return Err(bad(
                "it names no credentials, query or fragment (credentials come from the AWS environment or profile)",
            ));
        }
        let rest = rest.trim_end_matches('/');
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric);
        if !valid_bucket {
            return Err(bad("the bucket name must be 3 to 63 of a-z 0-9 . - (S3's rule)"));
        }
        if !prefix.is_empty() && check_key(prefix).is_err() {
            return Err(bad("the prefix must be folder names of A-Z a-z 0-9 _ . - separated by /"));
        }
        Ok(BucketUrl { bucket: bucket.to_string(), prefix: prefix.to_string() })
    }

    /// The URL of `key` under this prefix.
    pub fn of(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, true) => format!("s3://{}", self.bucket),
            (true, false) => format!("s3://{}/{key}", self.bucket),
            (false, true) => format!("s3://{}/{}", self.bucket, self.prefix),
            (false, false) => format!("s3://{}/{}/{key}", self.bucket, self.prefix),
        }
    }
}

impl std::fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.of(""))
    }
}

/// How a bucket is reached, when not from the environment and profile
/// ([`Bucket::open_with`]).
#[derive(Clone, Default)]
pub struct Settings {
    /// `http(s)://host:port` of an S3-compatible server (`None`: AWS).
    pub endpoint: Option<String>,
    /// The region (`None`: `us-east-1`).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key (never printed).
    pub secret_access_key: Option<String>,
    /// A session token.
    pub session_token: Option<String>,
    /// The working copy (`None`: under the cache directory, by URL).
    pub mirror: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint.as_deref().map(crate::redacted_url))
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "***"))
            .field("mirror", &self.mirror)
            .finish()
    }
}

/// A bucket prefix, its client, and its working copy on this machine.
pub struct Bucket {
    url: BucketUrl,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Handle,
    /// Dropped with the bucket: ends the runtime's thread.
    _stop: tokio::sync::oneshot::Sender<()>,
    mirror: PathBuf,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({})", self.url)
    }
}

/// The settings of the AWS profile `AWS_PROFILE` (or `default`) in the
/// shared credentials and config files, lower-case keys.
fn profile_settings() -> BTreeMap<String, String> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let profile = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "default".into());
    let file = |var: &str, default: &str| {
        std::env::var_os(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let mut out = BTreeMap::new();
    // The config file names a profile `[profile name]` (but `[default]`),
    // the credentials file `[name]`; credentials win.
    let config_section = if profile == "default" { "default".to_string() } else { format!("profile {profile}") };
    for (path, section) in [
        (file("AWS_CONFIG_FILE", "config"), config_section),
        (file("AWS_SHARED_CREDENTIALS_FILE", "credentials"), profile),
    ] {
        let Some(path) = path else { continue };
        let Ok(text) = crate::files::read_bounded(&path, 1 << 20, "the AWS profile file size (1 MiB)") else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        let mut inside = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                inside = name.trim() == section;
            } else if inside && let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    out
}

/// The first of the environment variables `vars` that is set and not empty.
fn env_of(vars: &[&str]) -> Option<String> {
    vars.iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Install ring as the process's TLS crypto provider (the bucket client's
/// TLS and the host's other rustls users share it). Harmless if one is.
pub fn install_crypto_provider() {
    // ring's provider is deprecated only for lacking post-quantum key
    // exchange (as in `outbound/gate.rs`).
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn bucket_error(name: String) -> impl FnOnce(object_store::Error) -> StorageError {
    move |e| match e {
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            StorageError::AlreadyExists { name }
        }
        other => StorageError::Bucket { name, message: one_line(&other) },
    }
}

/// An error and its sources on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

impl Bucket {
    /// Open `url` with the AWS environment and profile (see the module
    /// documentation). Nothing is sent until the first call.
    pub fn open(url: BucketUrl) -> Result<Bucket, StorageError> {
        let profile = profile_settings();
        let setting = |vars: &[&str], key: &str| env_of(vars).or_else(|| profile.get(key).cloned());
        let mut settings = Settings {
            region: setting(&["AWS_REGION", "AWS_DEFAULT_REGION"], "region"),
            endpoint: setting(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"], "endpoint_url"),
            ..Settings::default()
        };
        if env_of(&["AWS_ACCESS_KEY_ID"]).is_none() {
            settings.access_key_id = profile.get("aws_access_key_id").cloned();
            settings.secret_access_key = profile.get("aws_secret_access_key").cloned();
            settings.session_token = profile.get("aws_session_token").cloned();
        }
        Bucket::build(url, object_store::aws::AmazonS3Builder::from_env(), settings)
    }

    /// Open `url` with exactly `settings` (no environment, no profile): for
    /// tests and benchmarks, and embedders that keep their own credentials.
    pub fn open_with(url: BucketUrl, settings: Settings) -> Result<Bucket, StorageError> {
        Bucket::build(url, object_store::aws::AmazonS3Builder::new(), settings)
    }

    fn build(
        url: BucketUrl,
        builder: object_store::aws::AmazonS3Builder,
        settings: Settings,
    ) -> Result<Bucket, StorageError> {
        install_crypto_provider();
        let mut builder = builder.with_bucket_name(&url.bucket);
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
            if let Some(token) = &settings.session_token {
                builder = builder.with_token(token);
            }
        }
        builder = builder.with_region(settings.region.clone().unwrap_or_else(|| "us-east-1".into()));
        let endpoint = settings.endpoint.clone();
        if let Some(endpoint) = &endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(StorageError::Config(format!(
                    "AWS_ENDPOINT_URL '{}' must start with http:// or https://",
                    crate::redacted_url(endpoint)
                )));
            }
            let authority = endpoint.split_once("://").map_or("", |(_, rest)| rest);
            if authority.contains('@') || authority.contains('?') || authority.contains('#') {
                return Err(StorageError::Config(format!(
                    "AWS_ENDPOINT_URL '{}' must be scheme://host[:port][/path]: credentials come from \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile), never the URL",
                    crate::redacted_url(endpoint)
                )));
            }
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        };
        let client = object_store::ClientOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(10))
            .with_timeout(std::time::Duration::from_secs(120))
            .with_allow_http(endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
        let store = builder
            .with_retry(retry)
            .with_client_options(client)
            .build()
            .map_err(|e| StorageError::Config(format!("{url}: {}", one_line(&e))))?;
        let mirror = match settings.mirror {
            Some(m) => m,
            None => crate::sandbox::cache::default_dir()
                .ok_or_else(|| {
                    StorageError::Config(format!(
                        "{url}: no folder for its working copy (set GRAFLOW_CACHE_DIR, XDG_CACHE_HOME or HOME)"
                    ))
                })?
                .join("buckets")
                // By bucket, prefix and endpoint: two servers with a bucket
                // of the same name never share a working copy.
                .join(
                    &Sha256::of(format!("{url}\n{}", endpoint.as_deref().unwrap_or("aws")).as_bytes()).to_string()
                        [..16],
                ),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::Config(format!("{url}: cannot start its client: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("graflow-bucket".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| StorageError::Config(format!("{url}: cannot start its client thread: {e}")))?;
        Ok(Bucket { url, store: Arc::new(store), runtime: handle, _stop: stop, mirror })
    }

    /// The bucket and prefix.
    pub fn url(&self) -> &BucketUrl {
        &self.url
    }

    /// The working copy on this machine: checkpoints are committed here
    /// first (under its lock), then published; checkpoints read from the
    /// bucket are downloaded here and verified. It can be deleted when no
    /// run, resume or command uses the bucket.
    pub fn mirror(&self) -> &Path {
        &self.mirror
    }

    fn path(&self, key: &str) -> Result<object_store::path::Path, StorageError> {
        check_key(key)?;
        let full = if self.url.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.url.prefix) };
        object_store::path::Path::parse(full).map_err(|_| StorageError::BadKey(key.into()))
    }

    /// Run `f` on the bucket's thread and wait for it (an error only if
    /// that thread is gone: a panic in the client).
    fn block<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|_| self.stopped())
    }

    fn stopped(&self) -> StorageError {
        StorageError::Bucket { name: self.url.to_string(), message: "the bucket client stopped".into() }
    }

    /// Check once that the server honours create-only puts
    /// (`If-None-Match: *`): a server that ignores them would let two writers
    /// overwrite each other, so checkpoints are not written to it.
    pub fn check_conditional_puts(&self) -> Result<(), StorageError> {
        let key = format!(".graflow-probe-{:016x}", rand::random::<u64>());
        self.put_new(&key, b"probe")?;
        let second = self.put_new(&key, b"probe");
        let _ = self.delete(&key);
        match second {
            Err(StorageError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(StorageError::Config(format!(
                "{}: the server does not honour create-only puts (If-None-Match: *): two writers could \
                 overwrite each other's checkpoints, so none are written there",
                self.url
            ))),
        }
    }

    /// The size and time of `key`, if it exists.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let name = self.url.of(key);
        let key = key.to_string();
        match self.block(async move { store.head(&path).await })? {
            Ok(m) => Ok(Some(ObjectInfo { key, size: m.size, modified: m.last_modified.into() })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(bucket_error(name)(e)),
        }
    }

    /// Upload the file at `file` as `key`, replacing it: one put up to
    /// [`PART_BYTES`], a multipart upload above (an upload that fails is
    /// aborted). Only for keys no other writer writes (a claimed checkpoint).
    pub fn put_file(&self, key: &str, file: &Path) -> Result<u64, StorageError> {
        let path = self.path(key)?;
        let name = self.url.of(key);
        let local = |source| StorageError::Io { name: file.display().to_string(), source };
        let mut f = std::fs::File::open(file).map_err(local)?;
        let size = f.metadata().map_err(local)?.len();
        let store = self.store.clone();
        if size <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            f.read_to_end(&mut bytes).map_err(local)?;
            let payload = PutPayload::from(bytes);
            self.block(async move { store.put(&path, payload).await })?.map_err(bucket_error(name))?;
            return Ok(size);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(PARTS_IN_FLIGHT);
        let upload = self.runtime.spawn(async move {
            let upload = store.put_multipart(&path).await?;
            let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            while let Some(chunk) = rx.recv().await {
                if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    let _ = writer.abort().await;
                    return Err(e);
                }
                writer.put(chunk);
            }
            writer.finish().await
        });
        let mut sent = 0u64;
        loop {
            let mut chunk = vec![0u8; PART_BYTES];
            let mut filled = 0;
            while filled < chunk.len() {
                match f.read(&mut chunk[filled..]).map_err(local)? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            sent += filled as u64;
            if tx.blocking_send(bytes::Bytes::from(chunk)).is_err() {
                break;
            }
        }
        drop(tx);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = done_tx.send(upload.await);
        });
        match done_rx.recv() {
            Ok(Ok(Ok(_))) if sent == size => Ok(size),
            Ok(Ok(Ok(_))) => Err(StorageError::Io {
                name: file.display().to_string(),
                source: std::io::Error::other(format!("it changed while uploaded ({sent} of {size} bytes)")),
            }),
            Ok(Ok(Err(e))) => Err(bucket_error(name)(e)),
            Ok(Err(join)) => Err(StorageError::Bucket { name, message: join.to_string() }),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Download `key`, which must have exactly `size` bytes, into the new
    /// file `dest` (durably, never replacing a file). Nothing more than
    /// `size` bytes is read.
    pub fn get_to_file(&self, key: &str, dest: &Path, size: u64) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let name = self.url.of(key);
        let store = self.store.clone();
        let local = |source| StorageError::Io { name: dest.display().to_string(), source };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, StorageError>>(PARTS_IN_FLIGHT);
        let name2 = name.clone();
        self.runtime.spawn(async move {
            let result = match store.get(&path).await {
                Ok(r) if r.meta.size != size => {
                    Err(StorageError::WrongSize { name: name2.clone(), found: r.meta.size, expected: size })
                }
                Ok(r) => Ok(r.into_stream()),
                Err(e) => Err(bucket_error(name2.clone())(e)),
            };
            match result {
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
                Ok(mut stream) => {
                    while let Some(chunk) = stream.next().await {
                        let stop = chunk.is_err();
                        if tx.send(chunk.map_err(bucket_error(name2.clone()))).await.is_err() || stop {
                            break;
                        }
                    }
                }
            }
        });
        if let Some(dir) = dest.parent() {
            super::fsutil::create_dir_durable(dir).map_err(local)?;
        }
        let mut received = 0u64;
        let result = super::fsutil::write_durable_new_with(dest, |file| {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            while let Some(chunk) = rx.blocking_recv() {
                let chunk = chunk.map_err(std::io::Error::other)?;
                received += chunk.len() as u64;
                if received > size {
                    return Err(std::io::Error::other(format!("{name} sent more than its {size} bytes")));
                }
                out.write_all(&chunk)?;
            }
            if received != size {
                return Err(std::io::Error::other(format!("{name} ended after {received} of its {size} bytes")));
            }
            out.flush()
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists { name: dest.display().to_string() })
            }
            Err(e) => match e.into_inner().map(|inner| inner.downcast::<StorageError>()) {
                Some(Ok(storage)) => Err(*storage),
                Some(Err(other)) => Err(StorageError::Bucket { name, message: other.to_string() }),
                None => Err(StorageError::Bucket { name, message: "the download failed".into() }),
            },
        }
    }

    /// Write `key` with `bytes`, replacing it (a session's journal, which
    /// only the run that owns the session writes).
    pub fn put_replace(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let store = self.store.clone();
        self.block(async move { store.put(&path, PutPayload::from(bytes)).await.map(|_| ()) })?
            .map_err(bucket_error(self.url.of(key)))
    }
}

impl Storage for Bucket {
    fn name(&self, key: &str) -> String {
        self.url.of(key)
    }

    fn get(&self, key: &str, limit: u64, bound: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let name = self.url.of(key);
        let bound = bound.to_string();
        self.block(async move {
            let r = match store.get(&path).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(bucket_error(name)(e)),
            };
            if r.meta.size > limit {
                return Err(StorageError::TooLarge { name, size: r.meta.size, limit, bound });
            }
            let mut out = Vec::with_capacity(r.meta.size as usize);
            let mut stream = r.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(bucket_error(name.clone()))?;
                if out.len() as u64 + chunk.len() as u64 > limit {
                    return Err(StorageError::TooLarge {
                        name,
                        size: out.len() as u64 + chunk.len() as u64,
                        limit,
                        bound,
                    });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(Some(out))
        })?
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let payload = PutPayload::from(bytes.to_vec());
        self.block(async move { store.put_opts(&path, payload, PutOptions::from(PutMode::Create)).await.map(|_| ()) })?
            .map_err(bucket_error(self.url.of(key)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let full = match (self.url.prefix.is_empty(), prefix.trim_end_matches('/')) {
            (_, "") if self.url.prefix.is_empty() => None,
            (_, "") => Some(self.url.prefix.clone()),
            (true, p) => Some(p.to_string()),
            (false, p) => Some(format!("{}/{p}", self.url.prefix)),
        };
        let root = self.url.prefix.clone();
        let store = self.store.clone();
        let name = self.url.of(prefix);
        let want = prefix.to_string();
        let listed = self.block(async move {
            let path = full.map(object_store::path::Path::from);
            store.list(path.as_ref()).take(MAX_LISTED_OBJECTS + 1).collect::<Vec<_>>().await
        })?;
        if listed.len() > MAX_LISTED_OBJECTS {
            return Err(StorageError::TooLarge {
                name,
                size: listed.len() as u64,
                limit: MAX_LISTED_OBJECTS as u64,
                bound: "storage::bucket::MAX_LISTED_OBJECTS (objects in one listing)".into(),
            });
        }
        let mut out = Vec::new();
        for item in listed {
            let m = item.map_err(bucket_error(name.clone()))?;
            let full = m.location.to_string();
            let key = if root.is_empty() {
                full.as_str()
            } else {
                match full.strip_prefix(&root).and_then(|k| k.strip_prefix('/')) {
                    Some(k) => k,
                    None => continue,
                }
            };
            if key.starts_with(&want) && check_key(key).is_ok() {
                out.push(ObjectInfo { key: key.to_string(), size: m.size, modified: m.last_modified.into() });
            }
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let store = self.store.clone();
        match self.block(async move { store.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(bucket_error(self.url.of(key))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls() {
        let u = BucketUrl::parse("s3://my-bucket/runs/prod/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("my-bucket", "runs/prod"));
        assert_eq!(u.of("s/x.meta.json"), "s3://my-bucket/runs/prod/s/x.meta.json");
        assert_eq!(BucketUrl::parse("s3://abc").map(|u| u.prefix).ok().as_deref(), Some(""));
        for bad in ["s3://AB/x", "s3://ab", "s3://key:secret@bkt/p", "s3://bkt/../x", "s3://bkt/a?x=1", "s3://"] {
            let e = BucketUrl::parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("is not a bucket URL") && !e.contains("secret"), "{bad}: {e}");
        }
    }
}
